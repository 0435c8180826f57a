"""Which int8 instructions did ONNX Runtime run as an ARM CPU? Evaluates an ONNX model in the arm64 environment
(`make arm`) under qemu-aarch64 as each CPU model, with qemu's log of the guest code it translated (`-d in_asm`), and
counts the multiply instructions inside onnxruntime's library (its mappings from the same process's
/proc/self/maps). qemu's disassembler prints dot-product and I8MM instructions as `.byte`: those are decoded from
their encodings (Arm ARM: SDOT/UDOT by element and by vector, SMMLA/UMMLA/USMMLA).

    python tools/aarch64_kernels.py MODEL.onnx [--cpu neoverse-n1 --cpu cortex-a53]

A translated instruction ran at least once; the counts are of distinct instructions, not executions.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from quant_explorer import aarch64

# (name, mask, value) of the encodings qemu's disassembler leaves as `.byte`
ENCODINGS = (("sdot", 0xbf20fc00, 0x0e009400), ("udot", 0xbf20fc00, 0x2e009400), ("sdot", 0xbfc0f400, 0x0f80e000),
             ("udot", 0xbfc0f400, 0x2f80e000), ("smmla", 0xffe0fc00, 0x4e80a400), ("ummla", 0xffe0fc00, 0x6e80a400),
             ("usmmla", 0xffe0fc00, 0x4e80ac00))
WIDENING = ("smull", "umull", "smull2", "umull2", "smlal", "umlal", "smlal2", "umlal2", "sadalp", "uadalp")
GUEST = """import sys, numpy as np
from quant_explorer.aarch64 import ort_session
session = ort_session(sys.argv[1], 1)
image = session.get_inputs()[0]
shape = [d if isinstance(d, int) else 8 for d in image.shape]
session.run(None, {image.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)})
open(sys.argv[2], "w").write(open("/proc/self/maps").read())
"""


def census(log: str, maps: str) -> collections.Counter:
    ranges = [tuple(int(v, 16) for v in parts[0].split("-")) for parts in map(str.split, maps.splitlines())
              if len(parts) >= 6 and "onnxruntime" in parts[5] and "x" in parts[1]]
    count: collections.Counter = collections.Counter()
    for m in re.finditer(r"^0x([0-9a-f]+):\s+([0-9a-f]{8})\s+([a-z0-9.]+)", log, re.M):
        if any(lo <= int(m.group(1), 16) < hi for lo, hi in ranges):
            word, name = int(m.group(2), 16), m.group(3)
            count[next((n for n, mask, value in ENCODINGS if word & mask == value), name) if name == ".byte" else
                  name] += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--cpu", action="append", help="qemu CPU models (default: those of the ARM classes)")
    args = parser.parse_args()
    if aarch64.ready() is None:
        sys.exit(f"{aarch64.missing()}")
    for cpu in args.cpu or list(aarch64.CLASSES.values()):
        with tempfile.TemporaryDirectory() as tmp:
            log, maps = Path(tmp) / "in_asm.log", Path(tmp) / "maps"
            command = aarch64.command(cpu)
            subprocess.run([*command[:-1], "-d", "in_asm", "-D", str(log), command[-1], "-c", GUEST,
                            str(args.model.resolve()), str(maps)], env=aarch64.environ(), check=True,
                           stderr=subprocess.DEVNULL)
            count = census(log.read_text(), maps.read_text())
        names = dict.fromkeys([*(n for n, _, _ in ENCODINGS), *WIDENING])
        print(f"{cpu}: " + ", ".join(f"{n} {count[n]}" for n in names if count[n]) +
              f" (of {sum(count.values()):,} instructions translated in onnxruntime)")


if __name__ == "__main__":
    main()
