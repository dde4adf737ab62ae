"""``python -m ml COMMAND ...``: one entry point for every ML task.

Each command lives in its own module and is imported only when used, so that
``python -m ml synth`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys

# command -> "module:function"; the function takes argv (list[str]) and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("ml.data.synthetic.cli:main", "generate synthetic spine MRI studies"),
    "classify": ("ml.dicom.cli:main", "classify the series of DICOM folders (T1/T2/other, plane)"),
    "train": ("ml.train.cli:main", "train SpineFM stages: pretrain, gram, align, synthesizer"),
    "agents": ("ml.agents.cli:main", "train, evaluate and bootstrap the agents and their pipeline"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: python -m ml COMMAND [args...]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    target, _ = COMMANDS[argv[0]]
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
