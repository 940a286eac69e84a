"""PEFT methods by family (the survey's taxonomy, as metadata on each method).

* :mod:`.base`: the contract (:class:`~.base.PeftMethod`, :class:`~.base.PeftModule`) and the taxonomy;
* :mod:`.layers`: building blocks every family imports;
* :mod:`.registry`: the explicit list of methods and the one builder;
* :mod:`.attach`: put a method on a backbone, freeze the rest, count;
* :mod:`.task_checkpoint`: save and reload what a run trained.

Importing this package loads none of them (no torch), so pure-Python helpers below it stay light.
"""
