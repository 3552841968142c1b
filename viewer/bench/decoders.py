"""Per-frame decode time of every installed decoder per compressed syntax, and whether it scales
on 2 threads (it releases the GIL). The numbers behind the order in viewer.dicom.decoders.

One real CT frame is re-encoded per syntax (pydicom's encoders where it has one; imagecodecs
for JPEG lossless/lossy and HTJ2K, which pydicom cannot write), written to a file, scanned, and
its fragment bytes decoded by each candidate. "pydicom:<plugin>" rows time pydicom's
`Decoder.as_array` with that plugin on the already-read dataset; "pydicom dcmread+pixel_array"
is the whole-file path FrameReader used before the table (and still uses for deflate).

    radsight bench decoders [CT_FILE] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from viewer.bench.series_maker import encode_dataset, write_bench_series
from viewer.bench.timing import median_seconds
from viewer.dicom import decoders
from viewer.dicom.scan import read_records


SYNTAXES = {
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless", "1.2.840.10008.1.2.4.91": "JPEG 2000 lossy",
    "1.2.840.10008.1.2.4.201": "HTJ2K lossless", "1.2.840.10008.1.2.4.202": "HTJ2K RPCL lossless",
    "1.2.840.10008.1.2.4.203": "HTJ2K lossy", "1.2.840.10008.1.2.4.80": "JPEG-LS lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless", "1.2.840.10008.1.2.4.57": "JPEG lossless P14",
    "1.2.840.10008.1.2.4.70": "JPEG lossless SV1", "1.2.840.10008.1.2.4.50": "JPEG baseline 8-bit",
    "1.2.840.10008.1.2.4.51": "JPEG extended 12-bit", "1.2.840.10008.1.2.5": "RLE lossless",
    "1.2.840.10008.1.2.1.99": "Deflated explicit LE",
}


def write_encoded(source: Path, ts: str, target: Path) -> Path:
    ds = pydicom.dcmread(source)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    encode_dataset(ds, ts).save_as(target, enforce_file_format=True)
    return target


def _scaling(fn: Callable[[], object], repeats: int) -> float:
    """2-thread throughput over 1-thread: ~2 on two free cores when the decoder releases the GIL."""
    def loop():
        for _ in range(repeats):
            fn()
    t0 = time.perf_counter()
    loop()
    one = time.perf_counter() - t0
    threads = [threading.Thread(target=loop) for _ in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 2 * one / (time.perf_counter() - t0)


def gil_free_share(fn: Callable[[], object], repeats: int) -> float:
    """How much a pure-Python thread gets done while `fn` runs, relative to while sleeping.

    Unlike the throughput ratio this holds on a loaded machine (other processes slow both
    phases alike): a decoder that releases the GIL lets the probe run as if the caller slept
    (~1); one that holds it stops the probe for each call (<= ~0.5 with the 5 ms switch interval).
    """
    count = [0]
    running = [True]

    def probe():
        while running[0]:
            count[0] += 1
    thread = threading.Thread(target=probe)
    thread.start()
    try:
        t0, c0 = time.perf_counter(), count[0]
        for _ in range(repeats):
            fn()
        elapsed, busy = time.perf_counter() - t0, count[0] - c0
        c1 = count[0]
        time.sleep(elapsed)
        idle = count[0] - c1
    finally:
        running[0] = False
        thread.join()
    return busy / max(idle, 1)


def run_decoder_benchmark(source: Path | None = None, repeats: int = 20,
                          log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[dict]:
    """`source`: one CT file (a real one gives real entropy); without it, bench load's chest slice."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if source is None:
            write_bench_series(Path(tmp) / "source", 1)
            source = next((Path(tmp) / "source").iterdir())
        for ts, label in SYNTAXES.items():
            path = write_encoded(source, ts, Path(tmp) / f"{ts}.dcm")
            record = read_records(path)[0]
            ds = pydicom.dcmread(path)
            reference = ds.pixel_array
            candidates: list[tuple[str, Callable[[], np.ndarray]]] = []
            if record.encapsulated_offset is not None:
                src = decoders.FragmentSource().frame(record)
                for d in decoders.decoders_for(ts):
                    candidates.append((d.name, lambda d=d: decoders.conform(d.decode(src, record), src, record)))
                for plugin in get_decoder(UID(ts)).available_plugins:
                    candidates.append((f"pydicom:{plugin}", lambda p=plugin: get_decoder(UID(ts)).as_array(
                        ds, index=0, decoding_plugin=p)[0]))
            candidates.append(("pydicom dcmread+pixel_array", lambda: pydicom.dcmread(path).pixel_array))
            for name, fn in candidates:
                row = {"syntax": ts, "label": label, "decoder": name, "bytes": path.stat().st_size}
                try:
                    out = fn()
                    row["identical_to_pydicom"] = bool(np.array_equal(out, reference))
                    row["ms"] = round(1000 * median_seconds(fn, repeats), 2)
                    row["two_thread_speedup"] = round(_scaling(fn, max(repeats // 2, 5)), 2)
                    row["gil_free_share"] = round(gil_free_share(fn, max(repeats // 2, 5)), 2)
                except Exception as exc:  # a decoder that cannot read this variant is a finding too
                    row["error"] = f"{type(exc).__name__}: {exc}"[:160]
                log(json.dumps(row))
                rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'syntax':<24}{'decoder':<34}{'ms/frame':>9}{'2 threads':>10}{'GIL-free':>9}  identical"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['label']:<24}{r['decoder']:<34}  error: {r['error'][:60]}")
        else:
            lines.append(f"{r['label']:<24}{r['decoder']:<34}{r['ms']:>9.2f}{r['two_thread_speedup']:>9.2f}x"
                         f"{r['gil_free_share']:>9.2f}  {'yes' if r['identical_to_pydicom'] else 'no'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    rows = run_decoder_benchmark(args.source, args.repeats)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
