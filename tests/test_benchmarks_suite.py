"""virt_tf.benchmarks.suite: what a run reads and records besides the timings (the whole run
is timed end to end, tiny and in a subprocess, in test_benchmark_speed.py)."""
import io

import pytest

from virt_tf.benchmarks import suite


def test_read_first_column_reads_a_glue_tsv_as_written(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n"
                    "0\tA \"quoted\" premise.\tH0\tentailment\n"
                    "1\tSecond premise\tH1\tnot_entailment\n"
                    "2\tThird\tH2\tentailment\n", encoding="utf-8")
    assert suite.read_first_column(str(path), "sentence1", 2) == [
        'A "quoted" premise.', "Second premise"]  # QUOTE_NONE: quotes stay text
    assert suite.read_first_column(str(path), "sentence2", 10) == ["H0", "H1", "H2"]


@pytest.mark.parametrize("flags_line, expected", [
    ("flags\t\t: fpu sse4_2 avx2 fma avx512f avx512_bf16 amx_tile amx_bf16",
     "Some CPU @ 2.0GHz (amx_bf16, amx_tile, avx2, avx512_bf16, avx512f)"),
    ("flags\t\t: fpu sse4_2", "Some CPU @ 2.0GHz (no AVX2/AVX-512)"),
])
def test_cpu_name_names_the_model_and_its_vector_extensions(monkeypatch, flags_line, expected):
    info = f"processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\n{flags_line}\n"
    monkeypatch.setattr(suite, "open", lambda path, encoding=None: io.StringIO(info),
                        raising=False)
    assert suite.cpu_name() == expected


def test_cpu_name_without_proc_cpuinfo(monkeypatch):
    def missing(path, encoding=None):
        raise FileNotFoundError(path)
    monkeypatch.setattr(suite, "open", missing, raising=False)
    monkeypatch.setattr(suite.platform, "processor", lambda: "x86_64")
    assert suite.cpu_name() == "x86_64"


def test_sentence_transformers_need_their_script_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="st_script"):
        suite.run("mnli", str(tmp_path / "no_such_folder"), st_python="/usr/bin/python3",
                  st_backends=["torch"])
