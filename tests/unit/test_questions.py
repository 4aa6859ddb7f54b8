"""The questions file: YAML/JSON parsing, validation errors that name file, entry and field."""

from __future__ import annotations

import json

import pytest

from egr_core.errors import InputError
from egr_core.questions import (
    QuestionsFileError,
    dump_questions,
    load_questions,
    parse_questions,
)
from egr_core.types import Question

YAML = """\
# nightly questions
- id: invoice_total
  text: What is the invoice total?
- id: due_date
  text: "  What is the due date?  "
  pages: [2, 0, 2]
- id: 7
  text: Who signed?
  pages: 1
"""


def test_yaml_file_parses_in_order(tmp_path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(YAML)
    qs = load_questions(path)
    assert qs == (
        Question("invoice_total", "What is the invoice total?"),
        Question("due_date", "What is the due date?", pages=(0, 2)),
        Question("7", "Who signed?", pages=(1,)),
    )


def test_json_file_and_mapping_form(tmp_path) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"questions": [{"id": "a", "text": "What is A?"}]}))
    assert load_questions(path) == (Question("a", "What is A?"),)
    # JSON text is also accepted when the format is not known from a suffix.
    assert parse_questions('[{"id": "b", "text": "B?", "pages": [3]}]')[0].pages == (3,)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_dump_round_trips(fmt: str) -> None:
    qs = (Question("x.1", "What is X?"), Question("y-2", "What is Y?", pages=(0, 4)))
    assert parse_questions(dump_questions(qs, fmt), fmt=fmt) == qs


def _error(
    text: str, *, source: str = "nightly.yaml", fmt: str | None = None
) -> QuestionsFileError:
    with pytest.raises(QuestionsFileError) as info:
        parse_questions(text, source=source, fmt=fmt)
    assert isinstance(info.value, InputError)
    assert str(info.value).startswith(source)
    return info.value


@pytest.mark.parametrize(
    ("text", "entry", "field", "fragment"),
    [
        ("- id: a\n  text: A?\n- text: B?\n", 2, "id", "missing"),
        ("- id: a\n  text: A?\n- id: b\n", 2, "text", "missing"),
        ("- id: a\n  text: ''\n", 1, "text", "must not be empty"),
        ("- id: a\n  text: [1, 2]\n", 1, "text", "must be a string, got a list"),
        ("- id: [x]\n  text: A?\n", 1, "id", "string or an integer"),
        ("- id: true\n  text: A?\n", 1, "id", "string or an integer"),
        ("- id: 'has space'\n  text: A?\n", 1, "id", "letters, digits"),
        ("- id: a\n  text: A?\n  page: 1\n", 1, "page", "unknown field"),
        ("- id: a\n  text: A?\n  pages: [0, -1]\n", 1, "pages", "must be >= 0, got -1"),
        ("- id: a\n  text: A?\n  pages: ['1']\n", 1, "pages", "integers"),
        ("- id: a\n  text: A?\n  pages: []\n", 1, "pages", "empty list"),
        (
            "- id: a\n  text: A?\n- id: a\n  text: B?\n",
            2,
            "id",
            "duplicate id, first used by entry 1",
        ),
    ],
)
def test_entry_errors_name_file_entry_and_field(
    text: str, entry: int, field: str, fragment: str
) -> None:
    err = _error(text)
    assert (err.entry, err.field) == (entry, field)
    msg = str(err)
    assert f"entry {entry}" in msg and f"field {field!r}" in msg and fragment in msg, msg


def test_entry_error_carries_the_id_and_line() -> None:
    err = _error("- id: ok\n  text: Fine?\n- id: bad\n  text: 5\n")
    assert err.question_id == "bad" and err.line == 3
    assert str(err) == (
        "nightly.yaml: entry 2 (id 'bad', line 3): field 'text': must be a string, got an integer"
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("[]", "list of questions is empty"),
        ("id: a\ntext: b\n", "exactly one key 'questions'"),
        ("just a string", "expected a list of questions, got a string"),
        ("- 1\n", "entry 1"),
    ],
)
def test_file_level_errors(text: str, fragment: str) -> None:
    assert fragment in str(_error(text))


def test_syntax_errors_give_the_line() -> None:
    err = _error("- id: a\n  text: [unclosed\n- id: b\n")
    assert "invalid YAML" in str(err) and err.line is not None
    err = _error('[{"id": "a", "text": "A?"},\n {"id": }]', source="q.json", fmt="json")
    assert "invalid JSON" in str(err) and err.line == 2 and "q.json: line 2" in str(err)


def test_missing_file_names_the_path(tmp_path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(QuestionsFileError, match=r"nope\.yaml: file not found"):
        load_questions(path)


def test_synth_question_set_is_a_valid_questions_file() -> None:
    from egr.synth import question_set

    qs = question_set()
    assert parse_questions(dump_questions(qs)) == qs


def test_documents_field_limits_a_question_to_matching_file_names() -> None:
    text = (
        "- id: total\n  text: What is the total?\n  documents: invoice-*.pdf\n"
        "- id: claim\n  text: What is the claim number?\n  documents: [form-*.pdf, 'claim?.pdf']\n"
        "- id: any\n  text: Who signed?\n"
    )
    total, claim, anyq = parse_questions(text, source="q.yaml")
    assert total.documents == ("invoice-*.pdf",)
    assert total.applies_to("s3://bucket/in/invoice-00001.pdf")
    assert not total.applies_to("form-00001.pdf")
    assert claim.applies_to("claim7.pdf") and claim.applies_to("/x/form-1.pdf")
    assert not claim.applies_to("Claim7.pdf")  # case-sensitive
    assert anyq.documents is None and anyq.applies_to("whatever.pdf")
    assert parse_questions(dump_questions((total, claim, anyq))) == (total, claim, anyq)


@pytest.mark.parametrize(
    ("value", "needle"),
    [("[]", "empty list"), ("[3]", "file-name patterns"), ("a/b.pdf", "not paths")],
)
def test_documents_field_errors_name_the_field(value: str, needle: str) -> None:
    with pytest.raises(QuestionsFileError) as err:
        parse_questions(f"- id: q\n  text: Why?\n  documents: {value}\n", source="q.yaml")
    msg = str(err.value)
    assert "q.yaml" in msg and "'documents'" in msg and needle in msg
