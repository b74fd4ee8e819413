"""Prompts written as the checkpoint expects: chat template, system prompt, suffix, conversations."""

import json

import ml_collections
import numpy as np
import pytest
from tokenizers import processors

from configs import common
from rewardjax.data.formats import (
    DataFormatError,
    conversation_demonstrations,
    read_demonstrations,
)
from rewardjax.data.tasks.base import Problem
from rewardjax.tokenizers import PromptFormat, TokenizerError, load_tokenizer
from rewardjax.training.config_checks import ConfigError
from rewardjax.training.kinds.data import prompt_texts
from rewardjax.training.kinds.sft import sft_batch
from rewardjax.training.policy import prompt_format_of
from rewardjax.training.rollout import encode_prompts
from tests.test_tokenizers import CHAT_TEMPLATE, _bpe_dir

transformers = pytest.importorskip("transformers")

SYSTEM = "You are terse."
SUFFIX = "\nAnswer with a number."
# Llama 3 writes the BOS inside its template and its tokenizer also adds one.
BOS_TEMPLATE = "{{ bos_token }}" + CHAT_TEMPLATE


def _theirs(directory, template, **special):
    theirs = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(directory / "tokenizer.json"),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        **special,
    )
    theirs.chat_template = template
    return theirs


def _hf_ids(theirs, messages):
    ids = theirs.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def test_chat_prompt_ids_equal_transformers_apply_chat_template(tmp_path):
    directory, _ = _bpe_dir(tmp_path / "qwen")
    tok = load_tokenizer(directory)
    tok.prompt_format = PromptFormat(chat_template=True, system=SYSTEM, suffix=SUFFIX)
    expected = _hf_ids(
        _theirs(directory, CHAT_TEMPLATE),
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "7+5?" + SUFFIX}],
    )
    assert tok.encode_prompt("7+5?") == expected
    # The rendered text ends in the generation prompt, after the suffixed user turn.
    assert tok.render_prompt("7+5?").endswith(
        "7+5?\nAnswer with a number.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_template_that_writes_the_bos_gets_one_bos(tmp_path):
    directory, raw = _bpe_dir(tmp_path / "llama")
    raw.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)]
    )
    raw.save(str(directory / "tokenizer.json"))
    cfg = json.loads((directory / "tokenizer_config.json").read_text())
    cfg.update(bos_token="<|im_start|>", chat_template=BOS_TEMPLATE)
    (directory / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = load_tokenizer(directory)
    assert tok.default_add_bos
    tok.prompt_format = PromptFormat(chat_template=True)
    ids = tok.encode_prompt("hello")
    expected = _hf_ids(
        _theirs(directory, BOS_TEMPLATE, bos_token="<|im_start|>"),
        [{"role": "user", "content": "hello"}],
    )
    assert ids == expected
    # The template's BOS text is dropped, the encoder's BOS kept: encoding the
    # template's text with the checkpoint's BOS would have doubled it.
    naive = tok.encode(
        tok.apply_chat_template([{"role": "user", "content": "hello"}]), add_bos=True
    )
    assert naive == [tok.bos_id, *ids]


def test_message_history_is_rendered_whole_only_under_a_template(tmp_path):
    directory, _ = _bpe_dir(tmp_path / "tok")
    tok = load_tokenizer(directory)
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "2+2?"},
    ]
    flat = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant:"
    tok.prompt_format = PromptFormat(chat_template=True, suffix="!")
    text = tok.render_prompt(flat, history)
    assert text == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
        "<|im_start|>user\n2+2?!<|im_end|>\n<|im_start|>assistant\n"
    )
    # Without a template the flattened prompt is the text, suffix and system added.
    tok.prompt_format = PromptFormat(system="S", suffix="!")
    assert tok.render_prompt(flat, history) == "S\n\n" + flat + "!"
    tok.prompt_format = None
    assert tok.render_prompt(flat, history) == flat


def test_prompts_of_every_record_kind_go_through_the_format(tmp_path):
    directory, _ = _bpe_dir(tmp_path / "tok")
    tok = load_tokenizer(directory)
    tok.prompt_format = PromptFormat(chat_template=True, system=SYSTEM)
    problem = Problem(prompt="1+1?", answer="2", steps=[], uid="u", fields={})
    tokens, mask = encode_prompts(tok, [problem, "1+1?"])
    rendered = tok.render_prompt("1+1?")
    assert rendered.startswith("<|im_start|>system\nYou are terse.<|im_end|>")
    for row in range(2):
        real = tokens[row][mask[row] > 0].tolist()
        assert real == tok.encode(rendered)
    from rewardjax.data.formats import PreferencePair

    pair = PreferencePair(
        prompt="flat",
        chosen="a",
        rejected="b",
        fields={"prompt_messages": [{"role": "user", "content": "q"}]},
    )
    assert prompt_texts(tok, [pair]) == [
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nq<|im_end|>\n"
        "<|im_start|>assistant\n"
    ]


def test_conversation_gives_one_demonstration_per_assistant_turn(tmp_path):
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ],
        "source": "chat",
    }
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({"prompt": "p", "response": "r"}) + "\n")
    demos = read_demonstrations(path)
    assert [d.response for d in demos] == ["hello", "4", "r"]
    assert demos[0].fields["prompt_messages"] == row["messages"][:2]
    assert demos[1].fields["prompt_messages"] == row["messages"][:4]
    assert demos[1].fields["source"] == "chat" and demos[1].fields["turn"] == 4
    assert demos[1].prompt == (
        "System: Be brief.\n\nUser: hi\n\nAssistant: hello\n\nUser: 2+2?\n\nAssistant:"
    )
    # Under a template, each turn's prompt is the conversation before it, and the
    # loss falls on the turn's tokens and the EOS only.
    directory, _ = _bpe_dir(tmp_path / "tok")
    tok = load_tokenizer(directory)
    tok.prompt_format = PromptFormat(chat_template=True)
    batch, _ = sft_batch(tok, [(d, d.response) for d in demos[:2]], completion_length=8)
    prompt = batch["prompt_tokens"][1][batch["prompt_mask"][1] > 0].tolist()
    assert tok.decode(prompt, skip_special=False) == tok.apply_chat_template(row["messages"][:4])
    answer = batch["tokens"][1][batch["mask"][1] > 0].tolist()
    assert answer == [*tok.encode("4"), tok.eos_id]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"messages": []}, "'messages' must be a non-empty list"),
        ({"messages": [{"role": "user", "content": "q"}]}, "no assistant message"),
        ({"messages": [{"role": "assistant", "content": "a"}]}, "follows no user message"),
        ({"messages": [{"role": "user", "content": 3}]}, "message 0: content must be a string"),
        (
            {
                "messages": [
                    {"role": "robot", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ]
            },
            "role 'robot'",
        ),
    ],
)
def test_bad_conversations_name_the_row(row, message):
    with pytest.raises(DataFormatError, match=f"sft.jsonl:3: .*{message}"):
        conversation_demonstrations(row, "sft.jsonl:3")


def test_format_refuses_messages_without_a_user_turn():
    with pytest.raises(TokenizerError, match="no user turn"):
        PromptFormat(chat_template=True).messages([{"role": "system", "content": "s"}])


def test_config_asking_for_a_template_the_tokenizer_lacks_is_refused():
    c = ml_collections.ConfigDict({"prompt": common.prompt_block()})
    c.prompt.chat_template = True
    with pytest.raises(ConfigError, match=r"prompt.chat_template=True but the tokenizer 'char'"):
        prompt_format_of(c, load_tokenizer("char"))
    c.prompt.chat_template = False
    c.prompt.suffix = "?"
    fmt = prompt_format_of(c, load_tokenizer("char"))
    assert fmt == PromptFormat(suffix="?")
    assert np.array_equal(
        encode_prompts(_with(load_tokenizer("char"), fmt), ["1+1"])[0],
        encode_prompts(load_tokenizer("char"), ["1+1?"])[0],
    )


def _with(tok, fmt):
    tok.prompt_format = fmt
    return tok
