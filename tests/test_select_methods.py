"""Methods that select on the training data before training (SCT, GPS) and the run spine's selection hook.

The criteria on hand-checkable cases, the hook's plumbing against brute-force references, and whole runs on a
small VTAB-1k tree in ``tmp_path`` (in process): the selection reads the training split and nothing else, is
recorded with its time, is saved beside the run and read back (not recomputed) when the run resumes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from peftbench.apps import train
from peftbench.assemble import SELECTION_FILE, assemble, parse_spec
from peftbench.config import compose
from peftbench.data.readers import ImageListDataset
from peftbench.errors import ConfigError
from peftbench.methods.addition.adapter.sct import SCT, SCTQKV, class_aware_saliency, salient_channel_scores
from peftbench.methods.attach import attach_method
from peftbench.methods.layers.blocks import layerscale_parameters, transformer_blocks
from peftbench.methods.layers.selection import selection_modules, top_k_indices
from peftbench.methods.partial.specification.gps import (
    GPS,
    SparseDelta,
    accumulate_gradients,
    connection_top_k,
    gps_modules,
    supcon_loss,
)
from peftbench.methods.registry import build_method
from peftbench.records import read_record
from tests.tiny_models import ARCHS, prepare_on_tiny_data, tiny_training_data, tiny_vit

FAST = ["backbone=vit_test", "dataset=vtab/dtd", "trainer.epochs=2", "trainer.warmup_epochs=1",
        "trainer.batch_size=8", "trainer.progress=false", "trainer.device=cpu", "trainer.infer_iters=1",
        "trainer.infer_warmup=0"]
OPTIONS = {"sct": ["method.top_n=8"], "gps": []}


# -- the criteria on hand-checkable cases ----------------------------------------------------------------------
def test_sct_score_is_the_mean_over_present_classes_of_per_class_l2_norms():
    # class 0: sum of squares (9, 16, 0) -> norms (3, 4, 0); class 1: (16, 0, 4) -> (4, 0, 2); class 2 has no image
    sum_sq = torch.tensor([[9.0, 16.0, 0.0], [16.0, 0.0, 4.0], [5.0, 5.0, 5.0]], dtype=torch.float64)
    scores = class_aware_saliency(sum_sq, torch.tensor([1, 2, 0]))
    torch.testing.assert_close(scores, torch.tensor([3.5, 2.0, 1.0], dtype=torch.float64))
    assert top_k_indices(scores, 2).tolist() == [0, 1]


def test_top_k_keeps_the_largest_in_index_order_and_breaks_ties_low():
    assert top_k_indices(torch.tensor([1.0, 3.0, 3.0, 2.0]), 2).tolist() == [1, 2]
    assert top_k_indices(torch.tensor([[1.0, 3.0, 3.0, 2.0], [4.0, 0.0, 5.0, 4.0]]), 3).tolist() == [[1, 2, 3], [0, 2, 3]]


def test_gps_keeps_the_k_largest_absolute_gradients_of_every_row():
    grad = torch.tensor([[0.1, -0.5, 0.2], [0.3, 0.0, -0.4]])
    assert connection_top_k(grad, 1).tolist() == [[1], [2]]
    assert connection_top_k(grad, 2).tolist() == [[1, 2], [0, 2]]
    kernel = grad.reshape(2, 3, 1, 1)  # a conv kernel is read as (out, in * kh * kw)
    assert connection_top_k(kernel, 1).tolist() == [[1], [2]]


def test_supcon_loss_on_a_hand_computed_case():
    # two images of different classes, each view equal to its image's unit vector: every anchor has one positive
    # at cosine 1 and two negatives at cosine 0, so each term is -(1/T - log(2 + e^(1/T))).
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    features = torch.stack([torch.stack([e1, e1]), torch.stack([e2, e2])])  # (B=2, V=2, D=2)
    for t in (1.0, 0.5):
        expected = math.log(2 + math.exp(1 / t)) - 1 / t
        assert supcon_loss(features, torch.tensor([0, 1]), t).item() == pytest.approx(expected, rel=1e-6)
    # one class: the other image's two views are positives too (cosines 1, 0, 0 over three positives), and the
    # scale of the features does not matter (they are normalised): log(2 + e) - 1/3 at T = 1
    same = supcon_loss(3 * features, torch.tensor([0, 0]), 1.0).item()
    assert same == pytest.approx(math.log(2 + math.e) - 1 / 3, rel=1e-6)


# -- the hook's plumbing against brute-force references --------------------------------------------------------
@pytest.mark.parametrize(("arch", "prefix"), [("vit", 1), ("dinov2", 5), ("swin", 0)])
def test_sct_scores_equal_the_reference_computation_on_stored_activations(arch, prefix):
    data = dataclasses.replace(tiny_training_data(num_classes=5), num_classes=8)  # classes 5..7 have no image
    plain = ARCHS[arch].build().eval()
    model = ARCHS[arch].build()
    attach_method(model, build_method("sct", {"top_n": 4}))
    scores = salient_channel_scores(model, data, "attn")
    # the reference: keep every norm2 input of the unmodified model, per class the L2 norm over images and patch
    # tokens (class token and registers dropped; Swin has none), then the mean over the classes that occur
    blocks = transformer_blocks(plain)
    feats: dict[str, list[torch.Tensor]] = {name: [] for name, _ in blocks}
    for name, block in blocks:
        block.norm2.register_forward_pre_hook(
            lambda _m, inp, name=name: feats[name].append(inp[0].flatten(1, -2)[:, prefix:].detach()))
    images = torch.stack([data.plain[j][0] for j in range(len(data.plain))])
    labels = torch.tensor([data.plain[j][1] for j in range(len(data.plain))])
    with torch.no_grad():
        plain(images)
    for name, _ in blocks:
        x = feats[name][0]  # (N, T, C)
        expected = torch.stack([x[labels == c].norm(dim=(0, 1)) for c in labels.unique()]).mean(0)
        torch.testing.assert_close(scores[name], expected, rtol=1e-5, atol=1e-6)


def test_sct_qkv_on_separate_projections_maps_the_selected_q_and_v_channels():
    model = ARCHS["eva02"].build()
    method = build_method("sct", {"top_n": 4, "position": "qkv"})
    attach_method(model, method)
    attn = model.blocks[0].attn
    assert isinstance(attn.q_proj, SCTQKV) and isinstance(attn.v_proj, SCTQKV) and type(attn.k_proj) is torch.nn.Linear
    assert attn.q_proj.selection_buffers == ("q_index",) and attn.v_proj.selection_buffers == ("v_index",)
    summary = prepare_on_tiny_data(model, method)
    with torch.no_grad():
        attn.v_proj.v_map.weight.zero_()
        attn.v_proj.v_map.bias.fill_(1.0)  # the map adds 1 to the selected v channels only
        x = torch.randn(2, 17, 32)
        moved = (attn.v_proj(x) - attn.v_proj.base_layer(x)).abs().amax(dim=(0, 1)).nonzero().flatten().tolist()
    assert moved == summary["channels"]["blocks.0.attn.v_proj"]["v"] == attn.v_proj.v_index.tolist()


def test_gps_on_layerscale_backbones_trains_the_layer_scales_and_reads_depthwise_kernels_as_rows():
    for arch, scales in (("dinov2", 4), ("dinov3", 4), ("convnext", 4)):
        model = ARCHS[arch].build()
        method = build_method("gps")
        attach_method(model, method)
        trained = {id(p) for p in method.trainable_parameters(model)}
        layer_scales = layerscale_parameters(model)
        assert len(layer_scales) == scales and all(id(p) in trained and p.requires_grad for p in layer_scales)
    dw = model.stages[0].blocks[0].conv_dw  # ConvNeXt's depth-wise 7x7 conv: one row of 49 taps per channel
    assert isinstance(dw, SparseDelta) and dw.cols == 49 and dw.index.shape == (8, 1)
    model = ARCHS["dinov2"].build()  # without the reference's mask extras the layer scales stay frozen
    method = build_method("gps", {"train_biases": False})
    attach_method(model, method)
    trained = {id(p) for p in method.trainable_parameters(model)}
    assert not any(id(p) in trained or p.requires_grad for p in layerscale_parameters(model))


def test_gps_gradient_is_the_summed_supcon_gradient_of_the_plain_model():
    torch.manual_seed(0)
    batches = [((torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 0, 2])) for _ in range(2)]
    plain = tiny_vit().train()
    model = copy.deepcopy(plain)
    attach_method(model, build_method("gps"))
    for _, m in gps_modules(model):
        m.base_layer.weight.requires_grad_(True)
    assert accumulate_gradients(model, iter(batches), 0.07, torch.device("cpu"), None) == 2
    for (v1, v2), y in batches:
        f = plain.forward_head(plain.forward_features(torch.cat([v1, v2])), pre_logits=True)
        supcon_loss(torch.stack(f.split(len(y)), 1), y, 0.07).backward()
    for name, m in gps_modules(model):
        torch.testing.assert_close(m.base_layer.weight.grad, plain.get_submodule(name).weight.grad)


def test_gps_training_moves_only_the_selected_entries_and_the_biases():
    model = tiny_vit()
    method = build_method("gps", {"top_k": 2})
    attach_method(model, method)
    prepare_on_tiny_data(model, method)
    before = {n: m.base_layer.weight.detach().clone() for n, m in gps_modules(model)}
    index = {n: m.index.clone() for n, m in gps_modules(model)}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for step in range(2):
        opt.zero_grad()
        model(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(step))).logsumexp(-1).mean().backward()
        opt.step()
    merged = method.merge(model)
    for name, w0 in before.items():
        changed = (merged.get_submodule(name).weight.detach() != w0).flatten(1)
        allowed = torch.zeros_like(changed).scatter_(1, index[name], True)
        assert changed.any() and not (changed & ~allowed).any(), name


def test_without_data_the_placeholder_selection_stays_and_nothing_is_selected(tmp_path):
    for name in ("sct", "gps"):
        a = assemble(parse_spec(compose([*FAST, f"method={name}", *OPTIONS[name]])), weights=False, data=False)
        assert a.selection is None
        assert selection_modules(a.model) and not any(m.selected for _, m in selection_modules(a.model))


def test_bad_selection_options_are_config_errors():
    with pytest.raises(ConfigError, match="exceeds the 48 channels"):
        attach_method(tiny_vit(), build_method("sct"))  # K = 96 on a 48-wide model
    with pytest.raises(ConfigError, match="top_k must be an integer >= 1"):
        build_method("gps", {"top_k": "auto"})  # the per-task K live in the recipe (experiment=gps/gps)
    with pytest.raises(ConfigError, match="exceeds the 48 inputs of blocks.0.attn.qkv"):
        attach_method(tiny_vit(), build_method("gps", {"top_k": 49}))  # the blocks' Linears read 48 channels


# -- whole runs on a small VTAB-1k tree ---------------------------------------------------------------------
def _png(path: Path, rng: np.random.Generator, label: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 120, (20, 20, 3)) + 30 * label  # brighter with the label: a learnable signal
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """``vtab-1k/dtd`` with 16 train800, 8 val200 and 8 test images, labels 0..3."""
    root = tmp_path_factory.mktemp("select-data")
    task, rng, lines = root / "vtab-1k" / "dtd", np.random.default_rng(0), {}
    for split, n in {"train800": 16, "val200": 8, "test": 8}.items():
        lines[split] = [f"images/{split}/{i}.png {i % 4}" for i in range(n)]
        for i in range(n):
            _png(task / f"images/{split}/{i}.png", rng, i % 4)
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, rows in lines.items():
        (task / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return root


def _cfg(name: str, root: Path, results: Path, *extra: str) -> dict:
    return compose([*FAST, f"method={name}", *OPTIONS[name], f"data.root={root}", f"paths.results_dir={results}",
                    *extra])


@pytest.mark.parametrize(("name", "protocol", "split"), [("sct", "final", "train800val200"), ("gps", "tune", "train800")])
def test_the_selection_reads_the_training_split_and_nothing_else(name, protocol, split, data_root, monkeypatch):
    read: list[str] = []
    original = ImageListDataset.__getitem__

    def spy(self, index):
        read.append(self.entries[index][0])
        return original(self, index)

    monkeypatch.setattr(ImageListDataset, "__getitem__", spy)
    a = assemble(parse_spec(_cfg(name, data_root, data_root / "unused", f"protocol={protocol}")))  # selects; no training
    expected = {line.split()[0] for line in (data_root / "vtab-1k" / "dtd" / f"{split}.txt").read_text().splitlines()}
    assert set(read) == expected  # every training image, no validation or test image
    assert a.selection is not None and a.selection.split == split and a.selection.images == len(expected)
    assert all(m.selected for _, m in selection_modules(a.model))


@pytest.mark.parametrize("name", ["sct", "gps"])
def test_a_run_records_its_selection_and_resumes_on_it(name, data_root, tmp_path, monkeypatch):
    cfg = _cfg(name, data_root, tmp_path / "results", "resume.stop_after_epochs=1")
    with pytest.raises(KeyboardInterrupt):  # the interruption drill: stopped after epoch 1 was saved
        train.run(cfg)
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    first = json.loads(result.read_text())["selection"]
    assert first["split"] == "train800val200" and first["images"] == 24 and first["seconds"] > 0
    assert first["restored"] is False and first["method"] == name and first["criterion"]
    saved = load_file(result.parent / SELECTION_FILE)
    assert Path(first["file"]) == result.parent / SELECTION_FILE and saved

    cls = {"sct": SCT, "gps": GPS}[name]
    monkeypatch.setattr(cls, "prepare", lambda *a, **k: pytest.fail("a resumed run must not select again"))
    record = train.run(_cfg(name, data_root, tmp_path / "results"))  # the same command, without the drill
    assert record.status == "success" and record.resumed_from_epoch == 1
    assert record.selection is not None and record.selection.restored
    assert dataclasses.asdict(record.selection) == {**first, "restored": True}
    assert read_record(result).selection == record.selection  # the typed block round-trips through the JSON
    reread = load_file(result.parent / SELECTION_FILE)
    assert reread.keys() == saved.keys() and all(torch.equal(reread[k], saved[k]) for k in saved)
    if name == "sct":
        assert sum(len(v) for v in record.selection.selected["channels"].values()) == 4 * 8  # 4 blocks x K = 8
    else:
        assert record.selection.selected["selected_weights"] == sum(v.numel() for v in saved.values())


def test_selecting_methods_are_refused_as_components_of_a_composition():
    for name in ("sct", "gps"):
        with pytest.raises(ConfigError, match="selects on the training data"):
            build_method("compose", {"components": [{"method": name}]})


def test_fgvc_training_images_are_read_through_the_evaluation_preprocessing(tmp_path):
    from peftbench.data import DataConfig, DatasetConfig, build_splits
    from tests.test_data import fgvc_tree

    fgvc_tree(tmp_path)
    cfg = DatasetConfig(name="cub", suite="fgvc", num_classes=3, folder="CUB_200_2011", image_dir="images")
    splits = build_splits(cfg, DataConfig(root=str(tmp_path), image_size=32), "final", (0.5,) * 3, (0.5,) * 3)
    plain = splits.train_plain()  # train + val (a concatenation), resize + centre crop: no random crop or flip
    assert len(plain) == len(splits.train) == 9
    assert all(torch.equal(plain[i][0], splits.eval.transform(Image.open(splits.eval.base / p).convert("RGB")))
               for i, (p, _) in enumerate(splits.train.datasets[0].entries))
    assert [plain[i][1] for i in range(9)] == [splits.train[i][1] for i in range(9)]
