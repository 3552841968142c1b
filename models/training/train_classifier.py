"""Train, export and evaluate the RadSight demo nodule-type classifier (CPU).

    python -m models.training.train_classifier --out models/radsight-demo-nodule-classifier

Classes 0 solid, 1 part-solid, 2 ground-glass (ground-truth `kind` of viewer.demo nodules).
Input: a crop_mm [32, 32, 32] crop at 1 mm isotropic after reorient/resample/window, prepared
exactly like the engine's classify() (models/training/common.py classifier_crop). Training
crops: nodule centres jittered by up to +-3 mm per axis; other nodules pasted away from the centre
with the label still the centre one's (`distract`), so that the evidence is the nodule at the
point, which is what its explanation map must show; domain randomisation (`randomise`) so that the
nodule, not the demo phantom's background, tells the class; random flips and axial 90-degree
rotations. Held-out crops: the exact ground-truth centres of the test seeds. The
explanation map named in the card is chosen by the pointing game (`pointing_game`) over held-out
nodules of the demo generator and of tests/phantom_other.py.
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
from models.training.nets import NoduleClassifier

MODEL_ID = "radsight-demo-nodule-classifier"
NAMES = ("Solid nodule", "Part-solid nodule", "Ground-glass nodule")
COLORS = ([0.9, 0.9, 0.2], [1.0, 0.6, 0.1], [0.4, 0.7, 1.0])
VERSION = "1.1.0"  # 1.0.0: no distractors, no randomisation
CAM_NAME = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM"}
POINTING_DATA = "Pointing game"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--jitter-mm", type=float, default=3.0, help="crop centres moved by up to this per axis")
    p.add_argument("--randomise", type=float, default=0.3, help="share of training crops domain-randomised")
    p.add_argument("--distract", type=float, default=0.6,
                   help="share of training crops with another nodule pasted away from the centre (a second at half that)")
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--explain-layer", default="/features/relu3/Relu", help="ONNX node the card's explain names")
    p.add_argument("--explain-cam", default="layercam", choices=sorted(CAM_NAME))
    p.add_argument("--explain-fine-layer", default="/features/relu2/Relu",
                   help="earlier ONNX node whose map multiplies the target layer's (explain.fine_layer); '' for none")
    p.add_argument("--compare", nargs="*", default=["layercam@/features/relu3/Relu", "layercam@/features/relu2/Relu",
                                                    "gradcam@/features/conv4/Conv"],
                   help="other maps (cam@ONNX node) measured beside the card's, into explain.evaluation.compared")
    p.add_argument("--pointing-only", action="store_true",
                   help="only measure the pointing game of the model in --out and write it into its card")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jitters", type=int, default=6, help="jittered crops per nodule and visit")
    p.add_argument("--crop-mm", type=float, nargs=3, default=[32.0, 32.0, 32.0])
    p.add_argument("--spacing", type=float, nargs=3, default=[1.0, 1.0, 1.0])
    p.add_argument("--train-small", type=int, nargs=2, default=[100, 140], metavar=("FIRST", "STOP"))
    p.add_argument("--train-demo", type=int, nargs=2, default=[150, 153], metavar=("FIRST", "STOP"))
    p.add_argument("--test-small", type=int, nargs=2, default=[200, 210], metavar=("FIRST", "STOP"))
    p.add_argument("--test-demo", type=int, nargs=2, default=[250, 252], metavar=("FIRST", "STOP"))
    return p.parse_args()


def nodule_mask(nod: dict, point, size) -> np.ndarray:
    """The nodule's ellipsoid (ground truth) on the crop's 1 mm grid, whose centre voxel is at
    `point` to within half a voxel (the crop's centre is the voxel nearest the point)."""
    k, j, i = np.indices(size).reshape(3, -1)
    lps = np.asarray(point, float) + np.stack([i, j, k], 1) - np.array(size[::-1]) // 2
    local = (lps - nod["centre_lps_mm"]) @ np.asarray(nod["axis_directions_lps"], float).T
    return (np.sum((local / np.asarray(nod["semi_axes_mm"], float)) ** 2, axis=1) <= 1.0).reshape(size)


def crops(preset, seeds, args, jitters, rng, backgrounds: list | None = None):
    """Crops of every present nodule (centre + `jitters` crops moved by up to +-args.jitter_mm per
    axis), with the nodule's mask; and, into `backgrounds`, crops of lung away from any nodule."""
    xs, ys, sizes, masks = [], [], [], []
    size = tuple(int(round(c / s)) for c, s in zip(args.crop_mm[::-1], args.spacing[::-1]))
    for seed in range(*seeds):
        for visit in common.study(preset, seed):
            ct, labels = common.load_visit(visit)
            present = [n for n in visit["nodules"] if n["present"]]
            for nod in present:
                centre = np.asarray(nod["centre_lps_mm"], float)
                offsets = [np.zeros(3)] + [rng.uniform(-args.jitter_mm, args.jitter_mm, 3) for _ in range(jitters)]
                for off in offsets:
                    xs.append(common.classifier_crop(ct, centre + off, args.crop_mm, args.spacing))
                    masks.append(nodule_mask(nod, centre + off, size))
                    ys.append(common.KINDS.index(nod["kind"]))
                    sizes.append((6 * nod["volume_mm3"] / np.pi) ** (1 / 3))
            if backgrounds is not None:
                lung = np.argwhere(np.isin(labels.voxels, (1, 2)))
                for kji in lung[rng.choice(len(lung), min(len(lung), 40), replace=False)]:
                    point = labels.index_to_lps(kji[::-1].astype(float))
                    if all(np.linalg.norm(point - n["centre_lps_mm"]) > 25 for n in present):
                        backgrounds.append(common.classifier_crop(ct, point, args.crop_mm, args.spacing))
    return np.stack(xs), np.array(ys), np.array(sizes), np.stack(masks)


HU_LOW, HU_RANGE = common.WINDOW["low"], common.WINDOW["high"] - common.WINDOW["low"]


def randomise(x: np.ndarray, mask: np.ndarray, rng, backgrounds: list) -> np.ndarray:
    """Domain randomisation of one windowed crop x (z, y, x) whose nodule is `mask`: what the demo
    phantom keeps constant and real scans do not, so that only the nodule tells the class.
    Another lung background around the nodule, a chest wall touching it (juxtapleural), vessels
    passing by, HU scale and shift, lung texture, blur / sharp kernels, thick slices, noise."""
    from scipy import ndimage

    hu = x.astype(np.float32) * HU_RANGE + HU_LOW
    size = np.array(x.shape)
    grid = np.indices(x.shape).reshape(3, -1).T.astype(np.float32)  # (k, j, i)
    centre = np.argwhere(mask).mean(axis=0) if mask.any() else size / 2
    radius = max(float((3 * mask.sum() / (4 * np.pi)) ** (1 / 3)), 1.0)
    if backgrounds and rng.random() < 0.35:  # the nodule on another patient's lung
        other = backgrounds[rng.integers(len(backgrounds))].astype(np.float32) * HU_RANGE + HU_LOW
        keep = np.clip(ndimage.gaussian_filter(ndimage.binary_dilation(mask, iterations=1).astype(np.float32), 0.7), 0, 1)
        hu = keep * hu + (1 - keep) * other
    if rng.random() < 0.3:  # chest wall: a half-space touching or cutting into the nodule
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        depth = ((grid - centre) @ u).reshape(x.shape) - radius * rng.uniform(0.3, 1.2)
        wall = np.clip(depth + 0.5, 0, 1) * ~mask
        hu = hu * (1 - wall) + rng.uniform(10, 70) * wall
    for _ in range(rng.integers(0, 4)):  # vessels passing 1-6 mm from the nodule's surface
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        side = np.cross(u, rng.normal(size=3))
        side /= np.linalg.norm(side)
        through = centre + side * (radius + rng.uniform(1, 6))
        r = rng.uniform(0.6, 2.5)
        rel = grid - through
        distance = np.linalg.norm(rel - np.outer(rel @ u, u), axis=1).reshape(x.shape)
        vessel = np.clip(r + 0.5 - distance, 0, 1) * ~mask
        hu = hu * (1 - vessel) + rng.uniform(20, 60) * vessel
    hu = hu * rng.uniform(0.9, 1.1) + rng.uniform(-40, 40)
    if rng.random() < 0.5:  # parenchymal texture
        texture = ndimage.gaussian_filter(rng.normal(size=x.shape).astype(np.float32), rng.uniform(1, 2.5))
        hu += texture / max(float(texture.std()), 1e-6) * rng.uniform(5, 30) * (hu < -600)
    kernel = rng.random()
    if kernel < 0.35:
        hu = ndimage.gaussian_filter(hu, rng.uniform(0.3, 1.2))
    elif kernel < 0.6:
        hu = hu + rng.uniform(0.3, 1.0) * (hu - ndimage.gaussian_filter(hu, 1.0))
    if rng.random() < 0.4:  # slices 2-5 mm thick
        hu = ndimage.uniform_filter1d(hu, int(rng.integers(2, 6)), axis=0)
    noise = rng.normal(size=x.shape).astype(np.float32)
    if rng.random() < 0.4:
        noise = ndimage.gaussian_filter(noise, 0.7)
        noise /= max(float(noise.std()), 1e-6)
    hu += noise * rng.uniform(0, 45)
    return np.clip((hu - HU_LOW) / HU_RANGE, 0, 1).astype(np.float32)


def distract(x: np.ndarray, mask: np.ndarray, others: np.ndarray, other_masks: np.ndarray, rng) -> np.ndarray:
    """x (z, y, x) with another nodule (one of `others`, crops centred on their nodule, with its
    mask) pasted clear of the crop's own nodule, the label still the centre nodule's: nodule-like
    tissue away from the centre must not change the answer, so the evidence the network learns
    (and an explanation map shows) is the nodule at the point. The other nodule is moved whole
    (np.roll of its crop; it fits, so nothing wraps) to 1-10 mm beyond the two nodules' radii."""
    from scipy import ndimage

    n = int(rng.integers(len(others)))
    other, other_mask = others[n], other_masks[n]
    if not mask.any() or not other_mask.any():
        return x
    radius = float((3 * mask.sum() / (4 * np.pi)) ** (1 / 3))
    other_radius = float((3 * other_mask.sum() / (4 * np.pi)) ** (1 / 3))
    own_centre, other_centre = np.argwhere(mask).mean(axis=0), np.argwhere(other_mask).mean(axis=0)
    size = np.array(x.shape)
    for _ in range(30):
        u = rng.normal(size=3)
        target = own_centre + u / np.linalg.norm(u) * (radius + other_radius + rng.uniform(1, 10))
        extent = np.ptp(np.argwhere(other_mask), axis=0) / 2 + 2
        if np.all(target - extent >= 0) and np.all(target + extent < size):
            break
    else:
        return x
    shift = tuple(int(v) for v in np.rint(target - other_centre))
    moved = np.roll(other, shift, axis=(0, 1, 2))
    keep = np.roll(ndimage.binary_dilation(other_mask, iterations=1), shift, axis=(0, 1, 2))
    keep &= ~ndimage.binary_dilation(mask, iterations=1)
    weight = np.clip(ndimage.gaussian_filter(keep.astype(np.float32), 0.7) * 1.5, 0, 1)
    return (x * (1 - weight) + moved * weight).astype(np.float32)


def augment(x: np.ndarray, rng) -> np.ndarray:
    """x (z, y, x): random flips on every axis and a random axial 90-degree rotation."""
    for axis in range(3):
        if rng.random() < 0.5:
            x = np.flip(x, axis)
    x = np.rot90(x, rng.integers(4), axes=(1, 2))
    return np.ascontiguousarray(x)


def train(args):
    common.seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    xs, ys, ms, backgrounds = [], [], [], []
    for preset, seeds in (("small", args.train_small), ("demo", args.train_demo)):
        x, y, _, m = crops(preset, seeds, args, args.jitters, rng, backgrounds)
        xs.append(x)
        ys.append(y)
        ms.append(m)
    x_train, y_train, m_train = np.concatenate(xs), np.concatenate(ys), np.concatenate(ms)
    counts = np.bincount(y_train, minlength=3)
    print(f"{len(y_train)} training crops {counts.tolist()}, {len(backgrounds)} background crops "
          f"in {time.time() - t0:.0f} s", flush=True)
    centred = np.flatnonzero(np.arange(len(y_train)) % (args.jitters + 1) == 0)  # crops at a nodule's centre
    # class-balanced sampling
    p = (1.0 / counts)[y_train]
    p /= p.sum()
    model = NoduleClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.iters, pct_start=0.1)
    t1 = time.time()
    running = None
    for it in range(args.iters):
        idx = rng.choice(len(y_train), args.batch, p=p)
        batch = []
        for i in idx:
            x = randomise(x_train[i], m_train[i], rng, backgrounds) if rng.random() < args.randomise else x_train[i]
            for _ in range(int(rng.random() < args.distract) + int(rng.random() < args.distract / 2)):
                pool = centred[y_train[centred] != y_train[i]] if rng.random() < 0.75 else centred
                j = pool[rng.integers(len(pool))]  # mostly another type, so position, not type, decides
                x = distract(x, m_train[i], x_train[j:j + 1], m_train[j:j + 1], rng)
            batch.append(augment(x, rng))
        xb = torch.from_numpy(np.stack(batch))[:, None]
        yb = torch.from_numpy(y_train[idx])
        model.train()
        loss = F.cross_entropy(model(xb), yb, label_smoothing=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if it % 25 == 0 or it == args.iters - 1:
            print(f"iter {it} loss {running:.4f} {time.time() - t1:.0f} s", flush=True)
    train_s = time.time() - t1
    model.eval()
    return model, counts, train_s


def export(model, out: Path, size):
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    dummy = torch.zeros(1, 1, *size)
    torch.onnx.export(model, dummy, str(path), dynamo=False, opset_version=17, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    import onnx
    import onnxruntime as ort

    conv_nodes = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(4, 1, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(["logits"], {"image": x.numpy()})[0]
    diff = float(np.abs(ref - got).max())
    print(f"onnxruntime vs torch max abs diff {diff:.2e}; conv nodes {conv_nodes}", flush=True)
    assert diff < 1e-4, diff
    return diff, conv_nodes[-1]


def write_card(out: Path, args, size, metrics, training, explain_figures=None, version: str = VERSION):
    """card.json for the exported model. Fields this script does not make (training_data,
    validated_on, anything added by hand or by other tools) are kept from the card on disk, read
    just before writing; the pointing-game figures go into explain.evaluation and, when the card
    has a validated_on list, replace that list's pointing-game entries."""
    path = out / "card.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    explain = {"target_layer": args.explain_layer, "method": "gradcam", "cam": args.explain_cam,
               "torch_module": args.explain_layer.strip("/").replace("/Relu", "").replace("/", "."),
               "note": (f"{CAM_NAME.get(args.explain_cam, args.explain_cam)} on the ReLU after the third "
                        "convolution (8x8x8 cells of 4 mm)"
                        + (f" times the same map on {args.explain_fine_layer} (16x16x16 cells of 2 mm; "
                           "explain.fine_layer): the deep layer says which structure carries the class, the "
                           "finer one where in it" if args.explain_fine_layer else "")
                        + "; chosen by the pointing game over held-out nodules (see evaluation; 'compared' lists "
                        "the single-layer maps). The last convolution (4x4x4 cells of 8 mm) cannot point at a "
                        "5 mm nodule. In the ONNX graph each BatchNorm is folded into its convolution.")}
    if args.explain_fine_layer:
        explain["fine_layer"] = args.explain_fine_layer
    figures = explain_figures if explain_figures is not None else old.get("explain", {}).get("evaluation")
    if figures:
        explain["evaluation"] = figures
    card = {
        "id": MODEL_ID, "version": version, "name": "RadSight demo nodule type classifier",
        "task": "classification", "file": "model.onnx",
        "sha256": hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest(),
        "intended_use": "Demonstration on synthetic data only; not for clinical use.",
        "limitations": ("Trained only on RadSight's synthetic phantom nodules (viewer.demo), with other nodules "
                        "pasted away from the centre and domain randomisation (noise, kernels, HU scale and shift, "
                        "slice thickness, chest wall, vessels, other backgrounds). Its types differ mainly in attenuation. Untested on real CT; will "
                        "not generalise to real patients. Expects the crop within 4 mm of a nodule's centre; "
                        "outputs one of three types even when there is no nodule."),
        "modality": ["CT"], "body_part": ["CHEST"],
        "input": {"name": "image", "axes": "NCDHW", "channels": 1, "spatial_size": list(size)},
        "crop_mm": list(args.crop_mm),
        "preprocessing": [{"name": "reorient", "to": "LPS"},
                          {"name": "resample", "spacing_mm": list(args.spacing)},
                          {"name": "window", "low": -1000, "high": 400, "out_low": 0.0, "out_high": 1.0}],
        "output": {"name": "logits", "kind": "logits", "activation": "softmax",
                   "labels": [{"value": n, "name": name, "color": COLORS[n]} for n, name in enumerate(NAMES)]},
        "explain": explain,
        "training": {**training, "metrics": metrics},
    }
    if path.exists():  # re-read: another tool may have written since `old` was read
        old = json.loads(path.read_text())
    if version != VERSION and "limitations" in old:  # --pointing-only: the weights, and what they can do, stay
        card["limitations"] = old["limitations"]
    merged = {**old, **card}
    if figures and isinstance(merged.get("validated_on"), list):
        entries = [v for v in merged["validated_on"] if not str(v.get("data", "")).startswith(POINTING_DATA)]
        merged["validated_on"] = entries + pointing_validations(figures)
    path.write_text(json.dumps(merged, indent=2) + "\n")
    from viewer.inference.card import ModelCard

    ModelCard.from_file(path).verify_file()


def evaluate(out: Path, args) -> dict:
    """Held-out: the ground-truth centre of every present nodule of the test seeds, classified by
    RadSight's engine (viewer.inference.run.classify, ONNX Runtime CPU)."""
    from viewer.inference.card import ModelCard
    from viewer.inference.run import classify
    from viewer.inference.session import ModelSession

    card = ModelCard.from_file(out / "card.json")
    card.verify_file()
    session = ModelSession(card, "cpu", threads=args.threads)
    results = {}
    for preset, seeds in (("small", args.test_small), ("demo", args.test_demo)):
        cm = np.zeros((3, 3), int)
        by_size = {"lt6mm": [0, 0], "ge6mm": [0, 0]}
        for seed in range(*seeds):
            for visit in common.study(preset, seed):
                ct, _ = common.load_visit(visit)
                for nod in visit["nodules"]:
                    if not nod["present"]:
                        continue
                    res = classify(ct, card, nod["centre_lps_mm"], session)
                    pred = int(np.argmax(res.probabilities))
                    truth = common.KINDS.index(nod["kind"])
                    cm[truth, pred] += 1
                    d = (6 * nod["volume_mm3"] / np.pi) ** (1 / 3)
                    key = "lt6mm" if d < 6 else "ge6mm"
                    by_size[key][0] += pred == truth
                    by_size[key][1] += 1
        results[preset] = {
            "seeds": list(range(*seeds)), "crops": int(cm.sum()),
            "accuracy": round(float(np.trace(cm) / max(cm.sum(), 1)), 4),
            "balanced_accuracy": round(float(np.mean([cm[i, i] / max(cm[i].sum(), 1) for i in range(3)])), 4),
            "confusion_matrix_rows_truth_cols_pred": cm.tolist(),
            "accuracy_by_diameter": {k: (round(a / b, 4) if b else None, b) for k, (a, b) in by_size.items()},
        }
        print(preset, json.dumps(results[preset]), flush=True)
    results["classes"] = list(common.KINDS)
    return results


def pointing_cases(args):
    """(source, volume, point of the crop, centre, diameter mm, contains) for every held-out nodule:
    the last visit of each test seed of the demo generator, and tests/phantom_other.py (a chest
    made differently: textured lungs, curved vessels, lobulated and juxtapleural nodules, sharp or
    soft kernels, anisotropic and oblique grids). Each nodule is explained twice: the crop at its
    centre (as the demo does) and moved 3 mm in a random direction (as from a detection)."""
    from tests.phantom_other import make_other_phantom

    rng = np.random.default_rng(0)

    def both(source, volume, centre, diameter, contains, kind):
        u, truth = rng.normal(size=3), common.KINDS.index(kind)
        yield source, "centre", volume, centre, centre, diameter, contains, truth
        yield source, "offset", volume, centre + 3.0 * u / np.linalg.norm(u), centre, diameter, contains, truth

    for preset, seeds in (("small", args.test_small), ("demo", args.test_demo)):
        for seed in range(*seeds):
            visit = common.study(preset, seed)[-1]
            ct, _ = common.load_visit(visit)
            for nod in visit["nodules"]:
                if nod["present"]:
                    yield from both("demo", ct, np.asarray(nod["centre_lps_mm"], float), nod["equivalent_diameter_mm"],
                                    ellipsoid(nod), nod["kind"])
    for seed, spacing, tilt in OTHER_PHANTOMS:
        phantom = make_other_phantom(seed, spacing, tilt)
        for nod in phantom.nodules:
            yield from both("other", phantom.volume, nod.centre_lps, nod.diameter_mm, nod.contains, nod.kind)


OTHER_PHANTOMS = ((0, (0.7, 0.7, 2.5), 0.0), (1, (0.9, 0.9, 1.25), 20.0), (2, (0.6, 0.6, 1.0), 0.0),
                  (3, (1.0, 1.0, 3.0), 12.0))


def ellipsoid(nod: dict):
    centre, axes = np.asarray(nod["centre_lps_mm"], float), np.asarray(nod["semi_axes_mm"], float)
    directions = np.asarray(nod["axis_directions_lps"], float)
    return lambda points: np.sum((((np.asarray(points) - centre) @ directions.T) / axes) ** 2, axis=1) <= 1.0


def pointing_game(card_path: Path, args, configs=None) -> dict:
    """Pointing game (is the map's peak inside the nodule?) and mean share of the map's mass inside
    it, for nodules >= 5 mm, per source and crop position, for each (cam, layer) in `configs`
    (default: the card's own). As Zhang et al. (2018) play it, the map is the true class's
    (`peak_inside`, `pointing`, `mass_inside_mean`): does the evidence for the nodule's type lie on
    the nodule? What a user sees is the top class's map, which differs where the classifier gets
    the type wrong: `peak_inside_top_class` / `pointing_top_class`, with `classified_correctly`."""
    from viewer.inference.card import ModelCard
    from viewer.inference.explain import explain
    from viewer.inference.explain_quality import mass_inside, peak_lps
    from viewer.inference.session import ModelSession

    card = ModelCard.from_file(card_path)
    session = ModelSession(card, "cpu", threads=args.threads)
    configs = configs or [(card.explain.get("cam", "gradcam"), None)]  # None: the card's own map
    rows, names = {c: [] for c in configs}, {}
    for source, where, volume, point, centre, diameter, contains, truth in pointing_cases(args):
        if diameter < 5.0:
            continue
        for cam, layer in configs:
            top = explain(volume, card, point, method=cam, layer=layer, session=session)
            correct = top.target.value == truth
            heatmap = top if correct else explain(volume, card, point, method=cam, layer=layer, target=truth,
                                                  session=session)
            names[(cam, layer)] = f"{cam} {top.layer if layer is None else layer}"
            peak = peak_lps(heatmap)
            rows[(cam, layer)].append((source, where, bool(contains(peak[None])[0]), mass_inside(heatmap, contains),
                                       float(np.linalg.norm(peak - centre)), bool(contains(peak_lps(top)[None])[0]),
                                       correct))
    results = {}
    for (cam, layer), r in rows.items():
        table = {}
        for source in ("demo", "other"):
            for where in ("centre", "offset"):
                sel = [x for x in r if x[0] == source and x[1] == where]
                table[f"{source} {where}"] = {
                    "nodules": len(sel), "peak_inside": sum(x[2] for x in sel),
                    "pointing": round(sum(x[2] for x in sel) / max(len(sel), 1), 3),
                    "peak_inside_top_class": sum(x[5] for x in sel),
                    "pointing_top_class": round(sum(x[5] for x in sel) / max(len(sel), 1), 3),
                    "classified_correctly": sum(x[6] for x in sel),
                    "mass_inside_mean": round(float(np.mean([x[3] for x in sel])), 3),
                    "peak_distance_median_mm": round(float(np.median([x[4] for x in sel])), 2)}
        results[names[(cam, layer)]] = table
        print(cam, layer, json.dumps(table), flush=True)
    return results


def explain_evaluation(figures: dict, card_path: Path) -> dict:
    """The card's explain.evaluation: what was measured, on what, with which map (the first of
    `figures`); the other maps measured go into `compared` as peak_inside/nodules."""
    (name, table), *others = figures.items()
    compared = {other: {where: f"{r['peak_inside']}/{r['nodules']} (top class {r['peak_inside_top_class']})"
                        for where, r in results.items()}
                for other, results in [(name, table), *others]}
    return {"measure": "pointing game (Zhang et al. 2018): the peak of the true class's map inside the nodule "
                       "(exact ellipsoid or lobulated shape); _top_class: the map of the class the model gives, as "
                       "a user sees it; mass_inside: share of the true class's map's mass inside the nodule; "
                       "nodules >= 5 mm",
            "map": name, "date": time.strftime("%Y-%m-%d"),
            "data": {"demo": "viewer.demo held-out seeds (small 200-209, demo 250-251), last visit",
                     "other": "tests/phantom_other.py seeds 0-3 (0.7x0.7x2.5 mm; 0.9x0.9x1.25 mm tilted 20 deg; "
                              "0.6x0.6x1.0 mm; 1x1x3 mm tilted 12 deg)"},
            "positions": {"centre": "crop at the nodule's centre", "offset": "crop centre moved 3 mm"},
            "results": table, "compared": compared}


def pointing_validations(evaluation: dict) -> list[dict]:
    """validated_on entries (viewer.inference.card.Validation) for the pointing game."""
    out = []
    for source in ("demo", "other"):
        figures = {}
        for where in ("centre", "offset"):
            r = evaluation["results"][f"{source} {where}"]
            figures[f"pointing game, crop at {where}"] = f"{r['peak_inside']}/{r['nodules']}"
            figures[f"pointing game with the top class's map, crop at {where}"] = \
                f"{r['peak_inside_top_class']}/{r['nodules']}"
            figures[f"type correct, crop at {where}"] = f"{r['classified_correctly']}/{r['nodules']}"
            figures[f"mass inside nodule, crop at {where}"] = r["mass_inside_mean"]
        out.append({"data": f"{POINTING_DATA} ({evaluation['map']}): {evaluation['data'][source]}",
                    "kind": "synthetic", "date": evaluation["date"], "figures": figures})
    return out


def compared(args) -> list[tuple[str, str]]:
    """The card's own map first (layer None: as explain draws it), then the --compare ones."""
    return [(args.explain_cam, None)] + [tuple(c.split("@", 1)) for c in args.compare]


def main():
    args = parse_args()
    size = [int(round(c / s)) for c, s in zip(args.crop_mm[::-1], args.spacing[::-1])]
    card_path = args.out / "card.json"
    if args.pointing_only:
        old = json.loads(card_path.read_text())
        metrics = old["training"].pop("metrics", {})
        version = old["version"]  # same weights: only the explain section changes
        write_card(args.out, args, size, metrics, old["training"], {}, version)  # the card names the chosen map first
        figures = explain_evaluation(pointing_game(card_path, args, compared(args)), card_path)
        write_card(args.out, args, size, metrics, old["training"], figures, version)
        return
    model, counts, train_s = train(args)
    diff, _ = export(model, args.out, size)
    training = {
        "data": (f"Synthetic CT from viewer.demo.generate_demo: preset 'small' seeds {args.train_small[0]}-"
                 f"{args.train_small[1] - 1} and 'demo' seeds {args.train_demo[0]}-{args.train_demo[1] - 1}, "
                 f"3 visits each; every present nodule, centre + {args.jitters} jittered (+-{args.jitter_mm:g} mm) crops; "
                 f"{int(counts.sum())} crops, per class {counts.tolist()}. Held-out: 'small' seeds "
                 f"{args.test_small[0]}-{args.test_small[1] - 1}, 'demo' seeds {args.test_demo[0]}-{args.test_demo[1] - 1}."),
        "recipe": (f"3-D CNN (conv 16-32-64-64, BatchNorm, ReLU, max-pool, global average pool, linear), "
                   f"{args.iters} iterations of batch {args.batch}, class-balanced sampling, flips + axial "
                   f"rot90; another nodule (75 % of another type) pasted 1-10 mm clear of the centre one in {args.distract:.0%} "
                   f"of crops, a second in {args.distract / 2:.0%}, the label still the centre nodule's "
                   f"(train_classifier.distract); domain randomisation of {args.randomise:.0%} of crops (train_classifier.randomise: "
                   f"nodule pasted on other lung backgrounds 35 %, chest wall touching the nodule 30 %, 0-3 "
                   f"vessels 1-6 mm from it, HU x0.9-1.1 and +-40, lung texture, blur or sharpening, 2-5 mm "
                   f"slices 40 %, white or correlated noise 0-45 HU), AdamW lr {args.lr} one-cycle, label smoothing 0.05, seed "
                   f"{args.seed}, {args.threads} CPU thread(s), {train_s / 60:.1f} min."),
        "onnx_vs_torch_max_abs_diff": diff,
    }
    write_card(args.out, args, size, {}, training, {})
    metrics = evaluate(args.out, args)
    write_card(args.out, args, size, metrics, training, {})
    figures = explain_evaluation(pointing_game(card_path, args, compared(args)), card_path)
    write_card(args.out, args, size, metrics, training, figures)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
