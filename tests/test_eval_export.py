"""Reusing a finished run: re-scoring (peftbench-eval), per-image predictions and calibration, and the export to
Hugging Face PEFT's adapter format and to a plain timm checkpoint, each reloaded by the other library.

One real run (LoRA on the micro ViT, the small copy of embedded dsprites_loc from tests/tiny_data.py, one epoch) is trained once for the module; the export
contract over every LoRA-family and every mergeable method runs on the random-init test ViT, whose weights are
written to a file so that timm and peftbench load the same backbone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from peftbench.apps.evaluate import rescore
from peftbench.apps.export import as_peft, as_timm, export_run
from peftbench.apps.train import run as train_run
from peftbench.apps.trained import open_run, rebuild
from peftbench.assemble import assemble, build_plain_backbone, parse_spec
from peftbench.cli.eval import main as eval_main
from peftbench.cli.export import main as export_main
from peftbench.config import compose
from peftbench.engine.predictions import PredictionCollector, expected_calibration_error
from peftbench.errors import MethodNotSupportedError
from peftbench.methods.partial.hf_peft.bridge import HFPeftMethod
from peftbench.methods.registry import METHODS
from peftbench.methods.task_checkpoint import save_task_checkpoint
from peftbench.paths import weights_path
from tests.tiny_data import TINY_SIZES, embedded_tiny

peft = pytest.importorskip("peft")

TRAIN = ["method=lora", "trainer.epochs=1", "trainer.warmup_epochs=0", "trainer.lr=5e-3", "trainer.batch_size=32",
         "trainer.eval_batch_size=128", "trainer.infer_iters=0", "trainer.progress=false", "trainer.device=cpu",
         "trainer.num_threads=1", "trainer.save_predictions=true"]
MICRO = dict(patch_size=8, embed_dim=128, depth=6, num_heads=4, img_size=32)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    """One finished LoRA run with its predictions file; returns its folder."""
    root = tmp_path_factory.mktemp("reuse")
    embedded_tiny(root / "data")
    record = train_run(compose([*TRAIN, f"paths.results_dir={root / 'results'}", f"data.root={root / 'data'}"]))
    assert record.status == "success"
    return Path(record.provenance.run_dir)


def _logits(model: torch.nn.Module, size: int = 32) -> torch.Tensor:
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        return model.eval()(x).float()


# -- predictions and calibration ------------------------------------------------------------------------------
def test_ece_and_nll_match_their_definitions():
    # two bins hold images: (0.5, 0.6] with confidence 0.55 and accuracy 1/2; (0.9, 1] with 0.95 and 1
    conf, correct = np.array([0.55, 0.55, 0.95, 0.95]), np.array([True, False, True, True])
    assert expected_calibration_error(conf, correct, bins=10) == pytest.approx(100 * (0.5 * 0.05 + 0.5 * 0.05))
    logits = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 0, 1, -1])  # the last one unlabelled: predicted, not scored
    collector = PredictionCollector(topk=2)
    collector.add(logits[:3], labels[:3])
    collector.add(logits[3:], labels[3:])
    out = collector.result()
    assert out.nll == pytest.approx(torch.nn.functional.cross_entropy(logits[:6], labels[:6]).item(), rel=1e-6)
    assert out.topk_index.shape == (7, 2) and (out.topk_index[:, 0] == logits.argmax(1).numpy()).all()
    assert out.accuracy == pytest.approx(100 * (logits[:6].argmax(1) == labels[:6]).float().mean().item())


def test_a_run_records_calibration_and_its_predictions(lora_run):
    res = json.loads((lora_run / "result.json").read_text())
    m = res["metrics"]
    assert 0 <= m["expected_calibration_error"] <= 100 and m["ece_bins"] == 15 and m["nll"] > 0
    for key in ("accuracy", "accuracy_split", "trainable_params", "infer_img_s", "checkpoint_bytes", "wall_seconds"):
        assert key in m  # the keys every result had stay
    pred = np.load(lora_run / "predictions.npz")
    assert pred["topk_prob"].dtype == np.float16 and pred["topk_index"].shape == (TINY_SIZES["test"], 5)
    assert np.all(np.diff(pred["topk_prob"].astype(np.float32), axis=1) <= 0)  # most probable first
    test_list = (Path(res["config"]["data"]["root"]) / "vtab-1k/embedded_dsprites_loc/test.txt").read_text().split("\n")
    assert list(pred["image"]) == [line.rsplit(" ", 1)[0] for line in test_list if line]
    assert 100 * np.mean(pred["topk_index"][:, 0] == pred["label"]) == pytest.approx(m["accuracy"])


# -- peftbench-eval ------------------------------------------------------------------------------------------
def test_rescoring_gives_the_recorded_numbers(lora_run, tmp_path):
    res = json.loads((lora_run / "result.json").read_text())
    out = rescore(lora_run / "result.json", predictions=tmp_path / "p.npz")
    assert out["split"] == "test" and out["num_images"] == TINY_SIZES["test"]
    assert out["accuracy"] == res["metrics"]["accuracy"] and out["matches_recorded"] is True
    assert out["nll"] == pytest.approx(res["metrics"]["nll"], rel=1e-9)
    assert out["expected_calibration_error"] == pytest.approx(res["metrics"]["expected_calibration_error"], rel=1e-9)
    again, saved = np.load(tmp_path / "p.npz"), np.load(lora_run / "predictions.npz")
    assert set(again.files) == set(saved.files) and all(np.array_equal(again[k], saved[k]) for k in saved.files)
    other = rescore(lora_run, split="val200")
    assert other["num_images"] == TINY_SIZES["val200"] and other["recorded_accuracy"] is None and 0 <= other["accuracy"] <= 100


def test_rescoring_a_folder_of_images_predicts_without_labels(lora_run, tmp_path):
    images = Path(json.loads((lora_run / "result.json").read_text())["config"]["data"]["root"])
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("test_0000.png", "test_0001.png"):
        shutil.copy(images / "vtab-1k/embedded_dsprites_loc/images" / name, folder / name)
    out = rescore(lora_run, images=folder, predictions=tmp_path / "photos.npz")
    assert out["accuracy"] is None and out["num_images"] == 2 and out["nll"] is None
    pred, full = np.load(tmp_path / "photos.npz"), np.load(lora_run / "predictions.npz")
    assert list(pred["label"]) == [-1, -1] and np.array_equal(pred["topk_index"], full["topk_index"][:2])


def _refused(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    return err


def test_bad_input_to_eval_is_refused_and_nothing_is_overwritten(lora_run, tmp_path, capsys):
    no_weights = tmp_path / "copied"
    no_weights.mkdir()
    shutil.copy(lora_run / "result.json", no_weights / "result.json")
    assert "has no task.safetensors" in _refused(eval_main, [str(no_weights)], capsys)
    err = _refused(eval_main, [str(lora_run), "--split", "validation"], capsys)
    assert "valid choices: train800, val200, train800val200, test" in err
    # a task checkpoint trained on another backbone (the test ViT)
    other = assemble(parse_spec(compose(["backbone=vit_test", "method=lora"])), data=False)
    save_task_checkpoint(other.model, tmp_path / "other.safetensors")
    err = _refused(eval_main, [str(lora_run), "--checkpoint", str(tmp_path / "other.safetensors")], capsys)
    assert "does not fit" in err and "vit_micro" in err
    kept = tmp_path / "kept.npz"
    kept.write_bytes(b"keep me")
    assert "--overwrite" in _refused(eval_main, [str(lora_run), "--predictions", str(kept)], capsys)
    assert kept.read_bytes() == b"keep me"
    # the backbone weights at the recorded path are not those the run trained on
    moved = tmp_path / "moved"
    shutil.copytree(lora_run, moved)
    res = json.loads((moved / "result.json").read_text())
    res["backbone_weights_sha256"] = "0" * 64
    (moved / "result.json").write_text(json.dumps(res))
    assert "is not the file this run trained on" in _refused(eval_main, [str(moved)], capsys)


# -- peftbench-export on the real run ---------------------------------------------------------------------------
def test_exported_lora_reloads_in_peft_and_timm_with_the_runs_logits(lora_run, tmp_path):
    expected = _logits(rebuild(open_run(lora_run), device="cpu").model)
    fractal = str(weights_path("package:assets/vit_micro_fractal.safetensors"))
    manifest = export_run(lora_run, "peft", tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "peftbench_export.json"} <= {
        p.name for p in (tmp_path / "adapter").iterdir()}
    base = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=16, **MICRO,
                             pretrained_cfg_overlay=dict(file=fractal))
    loaded = peft.PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    assert (_logits(loaded) - expected).abs().max().item() <= 1e-5 and manifest["max_abs_logit_diff"] <= 1e-5

    export_run(lora_run, "timm", tmp_path / "plain")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=16, **MICRO,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "plain/model.safetensors"), num_classes=16))
    assert (_logits(model) - expected).abs().max().item() <= 1e-5  # merged: the sums are reordered, not changed


def test_bad_input_to_export_is_refused_and_nothing_is_overwritten(lora_run, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("x")
    err = _refused(export_main, [str(lora_run), "--format", "peft", "--out", str(taken)], capsys)
    assert "not an empty folder" in err and [p.name for p in taken.iterdir()] == ["mine.txt"]
    assert "no run here" in _refused(export_main, [str(tmp_path / "nope"), "--format", "timm", "--out",
                                                   str(tmp_path / "o")], capsys)
    assert not (tmp_path / "o").exists()


# -- the export contract over every method ------------------------------------------------------------------
@pytest.fixture(scope="module")
def test_vit_weights(tmp_path_factory) -> str:
    """Random-init weights of the test ViT in a file, so timm and peftbench build the same backbone."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build_plain_backbone(parse_spec(compose(["backbone=vit_test"])).backbone, 10)
    path = tmp_path_factory.mktemp("weights") / "vit_test.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("head.")}, str(path))
    return str(path)


def _trained(method: str, weights: str, *options: str):
    """The method on the test ViT with every trainable tensor moved off its init (as if trained)."""
    torch.manual_seed(0)
    a = assemble(parse_spec(compose(["backbone=vit_test", f"backbone.weights={weights}", f"method={method}",
                                     "dataset=vtab/cifar", *options])), data=False)
    with torch.no_grad():
        for p in a.model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    a.model.eval()
    return a


LORA_FAMILY = [("lora", ()), ("lora_qv", ()), ("lora", ("method.targets=q_k_v_o",)),
               ("lora", ("method.targets=all_linear", "method.alpha=4"))] + [
    (m.name, ()) for m in METHODS if issubclass(m, HFPeftMethod)]


@pytest.mark.parametrize(("method", "options"), LORA_FAMILY, ids=lambda v: v if isinstance(v, str) else "-".join(v))
def test_peft_export_reloads_onto_the_timm_model_with_identical_logits(method, options, test_vit_weights, tmp_path):
    a = _trained(method, test_vit_weights, *options)
    _, write = as_peft(a)
    write(tmp_path)
    base = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=100, patch_size=4, embed_dim=64,
                             depth=4, num_heads=4, img_size=32, pretrained_cfg_overlay=dict(file=test_vit_weights))
    loaded = peft.PeftModel.from_pretrained(base, str(tmp_path))
    assert (_logits(loaded) - _logits(a.model)).abs().max().item() <= 1e-5


MERGEABLE = [m.name for m in METHODS if m.mergeable and m.name != "noah"] + ["full", "linear"]


@pytest.mark.parametrize("method", MERGEABLE)
def test_timm_export_of_a_mergeable_run_reloads_with_identical_logits(method, test_vit_weights, tmp_path):
    a = _trained(method, test_vit_weights)
    reloaded, write = as_timm(a)
    assert write(tmp_path) == ["model.safetensors", "config.json"]
    model = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=100, patch_size=4, embed_dim=64,
                              depth=4, num_heads=4, img_size=32,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "model.safetensors"), num_classes=100))
    assert torch.equal(_logits(model), _logits(reloaded))  # the file holds exactly the merged model
    assert (_logits(model) - _logits(a.model)).abs().max().item() <= 1e-4


@pytest.mark.parametrize(("method", "fmt"), [("adapter", "peft"), ("adapter", "timm"), ("vpt_deep", "timm")])
def test_methods_without_that_format_are_refused_with_the_reason(method, fmt, test_vit_weights):
    a = _trained(method, test_vit_weights)
    with pytest.raises(MethodNotSupportedError, match="LoRA family" if fmt == "peft" else "mergeable"):
        (as_peft if fmt == "peft" else as_timm)(a)
