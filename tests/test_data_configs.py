"""Every YAML under configs/dataset composes through Hydra and builds a typed DatasetConfig; aliases resolve."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from peftbench.config import to_plain
from peftbench.data import ALIASES, DatasetConfig, canonical_option, make_dataset_config
from peftbench.errors import ConfigError
from peftbench.paths import config_dir, group_options
from peftbench.results.suites import FGVC_TASKS, VTAB_GROUPS

# reference/vtab1k.md and reference/fgvc.md
VTAB_CLASSES = {
    "cifar": 100, "caltech101": 102, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37, "svhn": 10,
    "sun397": 397, "patch_camelyon": 2, "eurosat": 10, "resisc45": 45, "diabetic_retinopathy": 5,
    "clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4, "dsprites_loc": 16, "dsprites_ori": 16,
    "smallnorb_azi": 18, "smallnorb_ele": 9,
}  # fmt: skip
FGVC_FACTS = {  # name: (classes, image folder below the dataset folder)
    "cub": (200, "images"),
    "nabirds": (555, "images"),
    "oxford_flowers": (102, ""),
    "stanford_dogs": (120, "Images"),
    "stanford_cars": (196, ""),
}
OPTIONS = group_options("dataset")


@functools.cache
def composed(option: str) -> dict:
    """The ``dataset`` block Hydra composes for ``dataset=<option>`` (dataset group alone, no primary config)."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return to_plain(compose(config_name=None, overrides=[f"+dataset={option}"]))["dataset"]


@pytest.mark.parametrize("option", OPTIONS)
def test_every_dataset_yaml_composes_into_a_typed_config(option):
    cfg = make_dataset_config(composed(option))
    suite, _, _ = option.partition("/")
    assert cfg.suite == suite
    if suite == "vtab":
        assert cfg.num_classes == VTAB_CLASSES[cfg.name]
        assert cfg.folder == cfg.name  # the shared vtab-1k folder names
        assert cfg.group == next(g for g, tasks in VTAB_GROUPS.items() if cfg.name in tasks)
    elif suite == "fgvc":
        assert cfg.name in FGVC_TASKS and (cfg.num_classes, cfg.image_dir) == FGVC_FACTS[cfg.name]
    else:
        from peftbench.data.embedded import TASKS

        assert (cfg.num_classes, cfg.group) == (TASKS[cfg.name].num_classes, TASKS[cfg.name].group)
        assert cfg.folder != cfg.name  # never collides with the real VTAB folder under one data.root


def test_the_canonical_configs_cover_both_suites_exactly():
    canonical = [o for o in OPTIONS if o not in ALIASES]
    names = {o: composed(o)["name"] for o in canonical}
    assert all(o.endswith("/" + n) for o, n in names.items())  # file name == canonical name
    assert {n for o, n in names.items() if o.startswith("vtab/")} == set(VTAB_CLASSES)
    assert {n for o, n in names.items() if o.startswith("fgvc/")} == set(FGVC_FACTS)
    from peftbench.data.embedded import TASKS

    assert [o for o in canonical if o.startswith("embedded/")] == sorted(f"embedded/{t}" for t in TASKS)


def test_aliases_dict_matches_the_alias_yamls():
    """The Python ALIASES and the YAMLs whose defaults pull in another option say the same thing."""
    root = Path(config_dir()) / "dataset"
    from_yaml = {}
    for option in OPTIONS:
        raw = OmegaConf.to_container(OmegaConf.load(root / f"{option}.yaml"))
        if raw and "defaults" in raw:
            targets = [d for d in raw["defaults"] if d != "_self_"]
            assert len(targets) == 1 and targets[0].endswith("@_here_"), (option, targets)
            assert set(raw) == {"defaults"}  # an alias adds nothing of its own
            from_yaml[option] = targets[0].removesuffix("@_here_")
    assert from_yaml == ALIASES
    assert all(target in OPTIONS and target not in ALIASES for target in ALIASES.values())


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_each_alias_composes_to_its_canonical_task(alias):
    assert composed(alias) == composed(ALIASES[alias])
    assert canonical_option(alias) == ALIASES[alias]


@pytest.mark.parametrize(
    ("alias", "name", "classes"),
    [
        ("vtab/cifar100", "cifar", 100),
        ("vtab/pets", "oxford_iiit_pet", 37),
        ("vtab/flowers102", "oxford_flowers102", 102),
        ("vtab/retinopathy", "diabetic_retinopathy", 5),
        ("vtab/camelyon", "patch_camelyon", 2),
        ("vtab/dsprites_location", "dsprites_loc", 16),
        ("vtab/smallnorb_elevation", "smallnorb_ele", 9),
        ("fgvc/cub200", "cub", 200),
        ("fgvc/dogs", "stanford_dogs", 120),
    ],
)
def test_aliases_through_the_train_app(alias, name, classes):
    """Through the real primary config, with a dataset override on the command line."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"dataset={alias}", "seed=3"])
    assert (cfg.dataset.name, cfg.dataset.num_classes, cfg.seed) == (name, classes, 3)


def test_make_dataset_config_rejects_unknown_keys_and_canonicalises_names():
    base = composed("vtab/cifar")
    with pytest.raises(
        ConfigError, match=r"dataset has no option\(s\) classes; valid options: .*num_classes"
    ):
        make_dataset_config({**base, "classes": 100})
    assert make_dataset_config({**base, "name": "cifar100"}).name == "cifar"
    assert make_dataset_config(OmegaConf.create(base)) == DatasetConfig(**base)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"suite": "imagenet"}, r"dataset\.suite='imagenet'; valid choices: vtab, fgvc, embedded"),
        ({"group": None}, r"dataset\.group=None .*valid choices: natural, specialized, structured"),
        ({"group": "nature"}, r"dataset\.group='nature'"),
        ({"num_classes": 1}, r"num_classes must be an integer >= 2, got 1"),
        ({"num_classes": "100"}, r"num_classes must be an integer >= 2, got '100'"),
        ({"folder": ""}, r"dataset\.name and dataset\.folder must be non-empty"),
    ],
)
def test_invalid_dataset_fields_are_rejected(change, message):
    with pytest.raises(ConfigError, match=message):
        make_dataset_config({**composed("vtab/cifar"), **change})


def test_fgvc_configs_have_no_group():
    with pytest.raises(ConfigError, match="FGVC datasets have no VTAB group"):
        make_dataset_config({**composed("fgvc/cub"), "group": "natural"})
