"""Train, export and evaluate the RadSight demo lung + nodule segmentation model (CPU).

    python -m models.training.train_segmentation --out models/radsight-demo-lung-nodule-seg --threads 2

Training data: synthetic studies from viewer.demo.generate_demo ("small" preset seeds 100-130 and
"demo" preset seeds 150-152, 3 visits each); calibration of the nodule logit: "small" 131-139 and
"demo" 153; held-out test: "small" seeds 200-209 and "demo" seeds 250-251. Preprocessing = the
card's (models/training/common.py). Evaluation runs the exported ONNX model through RadSight's own
engine (viewer.inference.run.segment) on the original study grid.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.training import common
from models.training.nets import UNet3D
from models.training.seg_randomisation import outside_air, randomise

MODEL_ID = "radsight-demo-lung-nodule-seg"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--iters", type=int, default=3000)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nodule-weight", type=float, default=3.0, help="cross-entropy weight of the nodule class")
    p.add_argument("--nodule-recall", type=float, default=1.0,
                   help="weight of the mean cross-entropy over nodule voxels alone (see dice_ce_loss)")
    p.add_argument("--version", default="1.2.0")
    p.add_argument("--init-from", type=Path, default=None,
                   help="fine-tune from this exported model.onnx (calibration offset undone), not from scratch")
    p.add_argument("--randomise", type=float, default=0.0,
                   help="share of random patches given domain randomisation (seg_randomisation.randomise)")
    p.add_argument("--randomise-nodule", type=float, default=None,
                   help="share of nodule-centred patches randomised (default 0.4 x --randomise)")
    p.add_argument("--nodule-frac", type=float, default=0.75, help="share of patches centred near a nodule")
    p.add_argument("--spacing", type=float, nargs=3, default=[2.0, 2.0, 2.5])
    p.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64])
    p.add_argument("--train-small", type=int, nargs=2, default=[100, 131], metavar=("FIRST", "STOP"))
    p.add_argument("--train-demo", type=int, nargs=2, default=[150, 153], metavar=("FIRST", "STOP"))
    p.add_argument("--test-small", type=int, nargs=2, default=[200, 210], metavar=("FIRST", "STOP"))
    p.add_argument("--test-demo", type=int, nargs=2, default=[250, 252], metavar=("FIRST", "STOP"))
    p.add_argument("--calib-small", type=int, nargs=2, default=[131, 140], metavar=("FIRST", "STOP"),
                   help="seeds (never trained on, never tested on) that set the nodule logit offset")
    p.add_argument("--calib-demo", type=int, nargs=2, default=[153, 154], metavar=("FIRST", "STOP"))
    p.add_argument("--eval-only", action="store_true", help="evaluate the existing model.onnx + card")
    p.add_argument("--calibrate-only", action="store_true",
                   help="set the nodule logit offset of the existing model.onnx, then evaluate")
    return p.parse_args()


def prepared(preset, seeds, spacing, outside: bool = False):
    """[(image (z,y,x) float32, target uint8, nodule voxel coordinates[, air around the patient])]
    for every visit."""
    items = []
    for seed in range(*seeds):
        for visit in common.study(preset, seed):
            ct, lab = common.load_visit(visit)
            img, labels, _, _ = common.preprocess(ct.voxels, ct.origin, ct.spacing, ct.direction, spacing,
                                                  labels=lab.voxels.astype(np.uint8))
            target = common.seg_target(labels)
            item = (img, target, np.argwhere(target == 2))
            if outside:
                item += (outside_air(_hu(img), target),)
            items.append(item)
    return items


def _hu(windowed):
    """HU back from the card's window (air below -1000 and bone above 400 stay clipped)."""
    w = common.WINDOW
    return (windowed - w["out_low"]) / (w["out_high"] - w["out_low"]) * (w["high"] - w["low"]) + w["low"]


def sample_patch(item, patch, rng, nodule: bool, randomise_p: float = 0.0, randomise_nodule_p: float = 0.0):
    img, target, nod = item[:3]
    shape = np.array(img.shape)
    patch = np.array(patch)
    if nodule and len(nod):
        centre = nod[rng.integers(len(nod))] + rng.integers(-patch // 4, patch // 4 + 1)
    else:
        centre = np.array([rng.integers(0, s) for s in shape])
    start = centre - patch // 2
    x = np.zeros(tuple(patch), np.float32)  # pad value = window out_low = 0
    y = np.zeros(tuple(patch), np.int64)
    src, dst = [], []
    for a in range(3):
        s0, s1 = max(start[a], 0), min(start[a] + patch[a], shape[a])
        src.append(slice(s0, s1))
        dst.append(slice(s0 - start[a], s1 - start[a]))
    x[tuple(dst)] = img[tuple(src)]
    y[tuple(dst)] = target[tuple(src)]
    if rng.random() < (randomise_nodule_p if nodule else randomise_p):
        out = np.ones(tuple(patch), bool)  # padding is air around the patient
        out[tuple(dst)] = item[3][tuple(src)]
        hu, t = randomise(_hu(x), y.astype(np.uint8), out, rng)
        x, y = common.window(hu, **common.WINDOW), t.astype(np.int64)
    if rng.random() < 0.5:  # left-right flip
        x, y = x[:, :, ::-1], y[:, :, ::-1]
    # mild intensity augmentation inside the window (keeps 0 = air/padding at 0)
    x = np.clip(x * rng.uniform(0.95, 1.05) + rng.normal(0, 0.01, x.shape).astype(np.float32), 0, 1)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def dice_ce_loss(logits, target, class_weights, nodule_recall: float = 0.0):
    """Cross-entropy + soft Dice (lung, nodule), plus `nodule_recall` x the mean cross-entropy over
    the nodule voxels alone. Why the last term: a 6 mm nodule is ~15 of the 131 k voxels of a patch
    at 2 mm, so even a class weight of 30 leaves it 0.3 % of the cross-entropy, and a soft Dice
    that starts near 0 on such small objects is best lowered by predicting no nodule at all (what
    1.0.0 learned). Averaging over the nodule voxels gives them a fixed share of the loss however
    small they are; the plain cross-entropy and the Dice keep vessels from being called nodules."""
    ce = F.cross_entropy(logits, target, weight=class_weights)
    if nodule_recall:
        per_voxel = F.cross_entropy(logits, target, reduction="none")
        nodule = target == 2
        if nodule.any():
            ce = ce + nodule_recall * per_voxel[nodule].mean()
    prob = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return ce + (1 - dice[1:]).mean()


def train(args):
    common.seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.randomise_nodule is None:
        args.randomise_nodule = 0.4 * args.randomise
    aug = args.randomise > 0
    data = (prepared("small", args.train_small, args.spacing, aug)
            + prepared("demo", args.train_demo, args.spacing, aug))
    print(f"{len(data)} training volumes prepared in {time.time() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(args.seed)
    model = UNet3D()
    if args.init_from:
        load_onnx_weights(model, args.init_from)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.iters, pct_start=0.1)
    weights = torch.tensor([1.0, 1.0, args.nodule_weight])
    t1 = time.time()
    running = None
    for it in range(args.iters):
        xs, ys = [], []
        for b in range(args.batch):
            item = data[rng.integers(len(data))]
            x, y = sample_patch(item, args.patch, rng, nodule=rng.random() < args.nodule_frac,
                                randomise_p=args.randomise, randomise_nodule_p=args.randomise_nodule)
            xs.append(x)
            ys.append(y)
        x = torch.from_numpy(np.stack(xs))[:, None]
        y = torch.from_numpy(np.stack(ys))
        model.train()
        if args.init_from:  # fine-tuning: keep the imported normalisation (see load_onnx_weights)
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm3d):
                    m.eval()
        logits = model(x)
        loss = dice_ce_loss(logits, y, weights, args.nodule_recall)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if it % 50 == 0 or it == args.iters - 1:
            with torch.no_grad():  # is the nodule class being learned? mean p(nodule) on and off nodules
                p = logits.softmax(1)[:, 2]
                on = p[y == 2].mean().item() if (y == 2).any() else float("nan")
                off = p[(y != 2)].mean().item()
                hits = (logits.argmax(1) == 2).sum().item()
            print(f"iter {it} loss {running:.4f} p(nodule) on {on:.3f} off {off:.4f} "
                  f"argmax-nodule voxels {hits} (true {(y == 2).sum().item()}) {time.time() - t1:.0f} s", flush=True)
    train_s = time.time() - t1
    print(f"trained {args.iters} iterations in {train_s:.0f} s", flush=True)
    model.eval()
    return model, len(data), train_s


def load_onnx_weights(model: UNet3D, path: Path) -> None:
    """Load an exported model.onnx into the torch net, to fine-tune it. The export folded each
    BatchNorm into the convolution before it, so the convolution gets the folded weights and its
    BatchNorm becomes the identity plus the folded bias (mean 0, variance 1 - eps, scale 1); training
    must keep those BatchNorms in eval mode. The calibration offset that was subtracted from the
    nodule logit's bias is added back (it is searched again after training)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    modules = dict(model.named_modules())
    names = list(modules)
    state = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        name = node.name.strip("/").split("/")[-2]  # "/enc.0/enc.0.0/Conv" -> "enc.0.0"
        weight, bias = init[node.input[1]], init[node.input[2]]
        state[f"{name}.weight"] = weight
        bn = names[min(names.index(name) + 1, len(names) - 1)]
        if isinstance(modules[bn], torch.nn.BatchNorm3d):
            eps = modules[bn].eps
            state.update({f"{bn}.weight": torch.ones_like(bias), f"{bn}.bias": bias,
                          f"{bn}.running_mean": torch.zeros_like(bias),
                          f"{bn}.running_var": torch.full_like(bias, 1.0 - eps)})
        else:
            state[f"{name}.bias"] = bias
    card = json.loads((path.parent / "card.json").read_text())
    state["head.bias"][2] += card["training"].get("calibration", {}).get("nodule_logit_offset", 0.0)
    missing = [k for k in model.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path}: no weights for {missing}; was it exported from nets.UNet3D?")
    model.load_state_dict(state, strict=False)


def export(model, out: Path, patch):
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    dummy = torch.zeros(1, 1, *patch)
    axes = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    torch.onnx.export(model, dummy, str(path), dynamo=False, opset_version=17, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": axes, "logits": axes})
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    for shape in [(2, 1, *patch), (1, 1, 16, 48, 40)]:
        x = torch.rand(*shape, generator=g)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(["logits"], {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    print(f"onnxruntime vs torch max abs diff {worst:.2e}", flush=True)
    assert worst < 1e-4, worst
    return path, worst


def calibrate(out: Path, args) -> dict:
    """Lower the nodule logit of the exported model by the offset that maximises nodule detection F1
    (2 TP / (2 TP + FP + FN), nodules of any size, a predicted component touching a nodule's voxels
    finds it) on calibration seeds used neither for training nor for the test. F1 and not voxel
    Dice because the channel is a candidate source for detection: Dice peaks at a larger offset
    that gives up found nodules to trim their borders.

    Why: the per-nodule-voxel cross-entropy (dice_ce_loss) trains the nodule class as if nodules
    were far more common than they are, so the raw model calls the voxels around nodules and the
    odd vessel segment nodule too. Subtracting a constant from one class's logit is the standard
    prior correction for a class-balanced loss (logit adjustment); it is folded into the bias of
    the model's last convolution so that the ONNX file, its card and the engine stay as they are.
    The offset is searched on the model's grid with the engine's own sliding window."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    from scipy import ndimage

    from viewer.inference.sliding_window import sliding_window

    path = out / "model.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    predict = lambda x: sess.run(["logits"], {"image": x})[0]  # noqa: E731
    margins, targets = [], []
    for item in prepared("small", args.calib_small, args.spacing) + prepared("demo", args.calib_demo, args.spacing):
        img, target, _ = item
        logits = sliding_window(img[None], tuple(args.patch), predict, 0.25, "gaussian", 2)
        margins.append((logits[2] - np.maximum(logits[0], logits[1])).astype(np.float32))
        targets.append((target == 2, *ndimage.label(target == 2, np.ones((3, 3, 3)))))
    offsets = np.round(np.arange(0.0, 12.01, 0.25), 2)
    table = []
    for offset in offsets:
        inter = denom = tp = n_gt = fp = 0
        for margin, (truth, gt, m) in zip(margins, targets):
            pred = margin > offset
            inter += 2 * np.sum(pred & truth)
            denom += pred.sum() + truth.sum()
            comps, n = ndimage.label(pred, np.ones((3, 3, 3)))
            n_gt += m
            tp += len(set(np.unique(gt[pred])) - {0})
            fp += n - len(set(np.unique(comps[truth])) - {0})
        table.append({"offset": float(offset), "detection_f1": round(2 * tp / max(2 * tp + fp + n_gt - tp, 1), 4),
                      "voxel_dice": round(float(inter / max(denom, 1)), 4),
                      "detected": int(tp), "nodules": int(n_gt), "false_positive_components": int(fp)})
    best = max(table, key=lambda r: (r["detection_f1"], -r["offset"]))
    print("calibration:", json.dumps([r for r in table if r["offset"] % 1 == 0 or r is best]), flush=True)
    model = onnx.load(str(path))
    head = next(n for n in model.graph.node if "logits" in n.output)
    assert head.op_type == "Conv" and len(head.input) == 3, head
    init = next(i for i in model.graph.initializer if i.name == head.input[2])
    bias = numpy_helper.to_array(init).copy()
    bias[2] -= best["offset"]
    init.CopyFrom(numpy_helper.from_array(bias, init.name))
    onnx.save(model, str(path))
    return {"nodule_logit_offset": best["offset"], "chosen_by": "largest nodule detection F1 on the calibration seeds",
            "seeds": (f"'small' {args.calib_small[0]}-{args.calib_small[1] - 1}, "
                      f"'demo' {args.calib_demo[0]}-{args.calib_demo[1] - 1}, 3 visits each (model grid)"),
            "at_offset_0": table[0], "at_chosen_offset": best}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _limitations(metrics: dict) -> str:
    text = ("Trained only on RadSight's synthetic phantom CTs (viewer.demo), with domain randomisation. Its lung "
            "label was checked on four real chest CTs against the lung region the CT itself shows (validated_on); "
            "its nodule channel was tested on synthetic CT only. Lung = parenchyma plus pulmonary vessels; airway "
            "is background.")
    if "small" in metrics and "demo" in metrics:
        s, d = metrics["small"], metrics["demo"]
        text += (f" On held-out synthetic CT: lung Dice {s['lung_dice']:.3f} / {d['lung_dice']:.3f} ('small' / 'demo' "
                 f"preset), nodules >= 4 mm found {s['sensitivity_ge_4mm']:.0%} / {d['sensitivity_ge_4mm']:.0%} with "
                 f"{s['false_positives_per_scan']:.1f} / {d['false_positives_per_scan']:.1f} false-positive components "
                 f"per scan; the nodule channel is a candidate source for detection, not a finished detector.")
    return text


def write_card(out: Path, args, metrics: dict, training: dict):
    card = {
        "id": MODEL_ID, "version": args.version, "name": "RadSight demo lung and nodule segmentation",
        "task": "segmentation", "file": "model.onnx", "sha256": sha256(out / "model.onnx"),
        "intended_use": "Demonstration on synthetic data only; not for clinical use.",
        "limitations": _limitations(metrics),
        "modality": ["CT"], "body_part": ["CHEST"],
        "input": {"name": "image", "axes": "NCDHW", "channels": 1, "spatial_size": None},
        "preprocessing": [{"name": "reorient", "to": "LPS"},
                          {"name": "resample", "spacing_mm": list(args.spacing)},
                          {"name": "window", "low": -1000, "high": 400, "out_low": 0.0, "out_high": 1.0}],
        "inference": {"patch_size": list(args.patch), "overlap": 0.25, "blending": "gaussian", "batch_size": 2},
        "output": {"name": "logits", "kind": "logits", "activation": "softmax",
                   "labels": [{"value": 1, "name": "Lung", "color": [0.3, 0.8, 0.3],
                               "code": {"value": "39607008", "scheme": "SCT", "meaning": "Lung"}},
                              {"value": 2, "name": "Lung nodule", "color": [1.0, 0.3, 0.2],
                               "code": {"value": "27925004", "scheme": "SCT", "meaning": "Nodule"}}]},
        "training": {**training, "metrics": metrics},
    }
    # What the model was trained and validated on is written by people (README "Training data"), not
    # by this script: keep it across retraining, and update validated_on from the new metrics by hand.
    previous = json.loads((out / "card.json").read_text()) if (out / "card.json").is_file() else {}
    card.update({key: previous[key] for key in ("training_data", "validated_on") if key in previous})
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    from viewer.inference.card import ModelCard

    c = ModelCard.from_file(out / "card.json")
    c.verify_file()
    return card


def evaluate(out: Path, args) -> dict:
    """Run the engine (viewer.inference.run.segment, ONNX Runtime CPU) on the held-out studies and
    score on the original grid. Detection rule: a ground-truth nodule (present at the visit,
    sphere-equivalent diameter >= 4 mm) is detected if a 26-connected component of predicted
    nodule voxels overlaps its label voxels or its centre voxel is predicted nodule. A false
    positive is a predicted component touching no ground-truth nodule label (of any size)."""
    import SimpleITK as sitk

    from viewer.inference.card import ModelCard
    from viewer.inference.run import segment
    from viewer.inference.session import ModelSession

    card = ModelCard.from_file(out / "card.json")
    card.verify_file()
    session = ModelSession(card, "cpu", threads=args.threads)
    results = {}
    for preset, seeds in (("small", args.test_small), ("demo", args.test_demo)):
        inter = denom = 0
        ninter = ndenom = 0
        tp = n_gt = fp = scans = 0
        missed = []
        by: dict[str, list[int]] = {}  # size band or kind -> [nodules, detected]
        t0 = time.time()
        for seed in range(*seeds):
            for v, visit in enumerate(common.study(preset, seed)):
                ct, lab = common.load_visit(visit)
                pred = segment(ct, card, session).labels.voxels
                truth = common.seg_target(lab.voxels.astype(np.uint8))
                inter += 2 * np.sum((pred == 1) & (truth == 1))
                denom += np.sum(pred == 1) + np.sum(truth == 1)
                ninter += 2 * np.sum((pred == 2) & (truth == 2))
                ndenom += np.sum(pred == 2) + np.sum(truth == 2)
                comps = sitk.GetArrayFromImage(sitk.ConnectedComponent(
                    sitk.GetImageFromArray((pred == 2).astype(np.uint8)), True))
                n = int(comps.max())
                hit_comps = set()
                for nod in visit["nodules"]:
                    if not nod["present"]:
                        continue
                    mask = lab.voxels == nod["label"]
                    hit = set(np.unique(comps[mask])) - {0}
                    hit_comps |= hit
                    d = (6 * nod["volume_mm3"] / np.pi) ** (1 / 3)
                    if d < 4.0:
                        continue
                    n_gt += 1
                    band = "4-6 mm" if d < 6.0 else "6-8 mm" if d < 8.0 else ">= 8 mm"
                    for key in (band, nod["kind"]):
                        by.setdefault(key, [0, 0])[0] += 1
                    ijk = np.rint(ct.lps_to_index(np.asarray(nod["centre_lps_mm"], float))).astype(int)
                    inside = all(0 <= ijk[a] < ct.shape[2 - a] for a in range(3))
                    centre_hit = inside and pred[ijk[2], ijk[1], ijk[0]] == 2
                    if hit or centre_hit:
                        tp += 1
                        for key in (band, nod["kind"]):
                            by[key][1] += 1
                    else:
                        missed.append({"seed": seed, "visit": v, "id": nod["id"], "kind": nod["kind"],
                                       "diameter_mm": round(d, 1)})
                fp += n - len(hit_comps)
                scans += 1
        results[preset] = {
            "scans": scans, "seeds": list(range(*seeds)),
            "lung_dice": round(float(inter / max(denom, 1)), 4),
            "nodule_voxel_dice": round(float(ninter / max(ndenom, 1)), 4),
            "nodules_ge_4mm": n_gt, "detected": tp,
            "sensitivity_ge_4mm": round(tp / max(n_gt, 1), 4),
            "false_positives_per_scan": round(fp / max(scans, 1), 3),
            "detected_by_size_and_kind": {k: f"{v[1]}/{v[0]}" for k, v in sorted(by.items())},
            "missed": len(missed), "seconds_per_scan": round((time.time() - t0) / max(scans, 1), 2),
        }
        print(preset, json.dumps({k: v for k, v in results[preset].items() if k != "missed"}), flush=True)
    results["rule"] = evaluate.__doc__.split("score on the original grid. ")[1].replace("\n   ", "").strip()
    return results


def main():
    args = parse_args()
    out = args.out
    if args.eval_only or args.calibrate_only:
        card = json.loads((out / "card.json").read_text())
        training = card["training"]
        if args.calibrate_only:
            training["calibration"] = calibrate(out, args)
    else:
        model, n_vol, train_s = train(args)
        _, diff = export(model, out, args.patch)
        training = {
            "data": (f"Synthetic CT from viewer.demo.generate_demo: preset 'small' seeds {args.train_small[0]}-"
                     f"{args.train_small[1] - 1} and preset 'demo' seeds {args.train_demo[0]}-{args.train_demo[1] - 1}, "
                     f"3 visits each ({n_vol} volumes). Held-out test: 'small' seeds {args.test_small[0]}-"
                     f"{args.test_small[1] - 1}, 'demo' seeds {args.test_demo[0]}-{args.test_demo[1] - 1}."),
            "recipe": (f"3-D U-Net (8-16-32-64 channels, BatchNorm, ReLU), "
                       + (f"fine-tuned from {args.init_from.parent.name or 'model.onnx'} (BatchNorm frozen) for "
                          if args.init_from else "")
                       + f"{args.iters} iterations of "
                       f"{args.batch} patches {args.patch} ({args.nodule_frac:.0%} centred near nodules), AdamW lr "
                       f"{args.lr} one-cycle, cross-entropy (weights 1, 1, {args.nodule_weight:g}) + {args.nodule_recall:g} x mean "
                       f"cross-entropy over nodule voxels + soft Dice, "
                       + (f"domain randomisation (seg_randomisation.randomise) of {args.randomise:.0%} of the random "
                          f"patches and {args.randomise_nodule:.0%} of the nodule-centred ones, " if args.randomise else "")
                       + f"seed "
                       f"{args.seed}, {args.threads} CPU thread(s), {train_s / 60:.1f} min."),
            "onnx_vs_torch_max_abs_diff": diff,
        }
        training["calibration"] = calibrate(out, args)
    write_card(out, args, {}, training)
    metrics = evaluate(out, args)
    write_card(out, args, metrics, training)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
