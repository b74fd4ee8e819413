"""One tokenizer interface over HF `tokenizer.json`, sentencepiece and a char vocabulary.

  tok = load_tokenizer("char")                      # procedural tasks
  tok = load_tokenizer("/ckpt/qwen2.5-0.5b")        # tokenizer.json + tokenizer_config.json
  tok = load_tokenizer("/ckpt/llama2/tokenizer.model")
  ids, mask = tok.batch_encode(["Q: 1+2\\n", "Q: 10+20\\n"])   # [B, L], left-padded
  check_vocab(tok, model_config.vocab_size)
  tok.prompt_format = PromptFormat(chat_template=True, system="You are a helpful assistant.")
  ids = tok.encode_prompt("What is 2+3?")            # the checkpoint's chat template, rendered

Every tokenizer exposes `vocab_size`, `eos_id`, `pad_id`, `bos_id` (or None),
`stop_ids` (eos plus any extra end-of-turn ids), `encode`, `decode`,
`batch_encode` and `apply_chat_template`. Nothing is downloaded: a tokenizer is
a local path or the built-in `"char"` vocabulary.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import functools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CharTokenizer",
    "HFTokenizer",
    "PromptFormat",
    "SentencePieceTokenizer",
    "Tokenizer",
    "TokenizerError",
    "check_vocab",
    "load_tokenizer",
]

# End-of-sequence names tried, in order, when a tokenizer.json comes without a
# tokenizer_config.json naming its eos token.
_KNOWN_EOS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>", "<|eot_id|>")


class TokenizerError(ValueError):
    """A tokenizer file, configuration or input that cannot be used."""


Message = Mapping[str, Any]
_ROLES = ("system", "user", "assistant", "tool")


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How a run writes its prompts for the checkpoint (config block `prompt`).

    A prompt is a string (one user turn) or a message list (a conversation up
    to the reply to generate, e.g. UltraFeedback's or HH-RLHF's history).

    Attributes:
      chat_template: render with the tokenizer's chat template and its
        generation prompt, as `transformers`' `apply_chat_template(...,
        add_generation_prompt=True)` does; False: the plain text.
      system: a system message put first (unless the messages start with one);
        in plain text it precedes the prompt, followed by a blank line.
      suffix: appended to the last user message, e.g. "\nPut your final answer
        within \\boxed{}.".
    """

    chat_template: bool = False
    system: str = ""
    suffix: str = ""

    def messages(self, prompt: str | Sequence[Message]) -> list[dict[str, str]]:
        """The message list of `prompt`, with the system message and the suffix applied."""
        if isinstance(prompt, str):
            out = [{"role": "user", "content": prompt}]
        else:
            out = [checked_message(m, i) for i, m in enumerate(prompt)]
        users = [i for i, m in enumerate(out) if m["role"] == "user"]
        if not users:
            raise TokenizerError("a prompt's messages hold no user turn")
        if self.suffix:
            last = out[users[-1]]
            out[users[-1]] = {**last, "content": last["content"] + self.suffix}
        if self.system and out[0]["role"] != "system":
            out.insert(0, {"role": "system", "content": self.system})
        return out

    def render(self, tokenizer: Tokenizer, prompt: str | Sequence[Message]) -> str:
        """The prompt's text, ready for `tokenizer.encode(text, add_bos=tokenizer.default_add_bos)`.

        A template that writes the BOS itself (Llama 3's `{{ bos_token }}`)
        loses it here when the tokenizer adds one on encoding, so the ids are
        those of `apply_chat_template(..., tokenize=True)`, with one BOS.
        """
        if self.chat_template:
            text = tokenizer.apply_chat_template(self.messages(prompt), add_generation_prompt=True)
            bos = tokenizer.special_token_strings().get("bos_token")
            if tokenizer.default_add_bos and bos and text.startswith(bos):
                text = text[len(bos) :]
            return text
        if not isinstance(prompt, str):
            return plain_transcript(self.messages(prompt))
        head = f"{self.system}\n\n" if self.system else ""
        return head + prompt + self.suffix


def plain_transcript(messages: Sequence[Message]) -> str:
    """Messages as "User: …\n\nAssistant: …\n\nAssistant:" for a model without a template."""
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join([*turns, "Assistant:"])


def checked_message(message: Any, index: int) -> dict[str, str]:
    """`{"role", "content"}` of a chat message, or a TokenizerError naming its index."""
    if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
        raise TokenizerError(f"message {index} is not a {{'role', 'content'}} object: {message!r}")
    if message["role"] not in _ROLES:
        raise TokenizerError(f"message {index} has role {message['role']!r}; roles: {_ROLES}")
    if not isinstance(message["content"], str):
        raise TokenizerError(f"message {index}: content must be a string")
    return {"role": message["role"], "content": message["content"]}


class Tokenizer(abc.ABC):
    """Common interface; subclasses implement `encode` and `decode`.

    Attributes:
      vocab_size: one more than the largest id the tokenizer can produce.
      eos_id: end-of-sequence id (appended to completions; stops sampling).
      pad_id: id written into padding positions (masked out everywhere).
      bos_id: beginning-of-sequence id, or None when the vocabulary has none.
      stop_ids: ids that end a completion (eos first, then e.g. `<|im_end|>`).
      default_add_bos: whether the checkpoint's own tokenizer prepends bos
        (`add_bos_token` in tokenizer_config.json, or a tokenizer.json post-
        processor that adds it); pass it as `add_bos=` to match the checkpoint.
      chat_template: jinja2 source of the chat template, or None.
      source: the path (or "char") the tokenizer was loaded from; errors name it.
      prompt_format: how `encode_prompt` writes a policy's prompts (set by the
        trainer from the config's `prompt` block); None: the prompt text as is.
    """

    vocab_size: int
    eos_id: int
    pad_id: int
    bos_id: int | None
    stop_ids: tuple[int, ...]
    default_add_bos: bool = False
    chat_template: str | None
    source: str
    prompt_format: PromptFormat | None = None

    @abc.abstractmethod
    def encode(self, text: str, *, add_bos: bool = False) -> list[int]:
        """Token ids of `text`, with `bos_id` first when `add_bos`; never adds eos."""

    @abc.abstractmethod
    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        """Text of `ids`. Decodes everything given: the caller truncates at eos.

        With `skip_special`, special ids (pad/bos/eos, added special tokens) and
        ids outside the vocabulary (a model vocabulary may be padded beyond the
        tokenizer's) are dropped; otherwise special ids are rendered and an id
        outside the vocabulary is an error.
        """

    def special_token_strings(self) -> dict[str, str]:
        """Names available to a chat template (`bos_token`, `eos_token`, ...)."""
        return {}

    def render_prompt(self, prompt: str, messages: Sequence[Message] | None = None) -> str:
        """The text of a policy prompt under `prompt_format` (None: `prompt` as is).

        `messages` is the conversation `prompt` was flattened from, when the
        data has one (`fields["prompt_messages"]`); a chat template renders it
        instead of `prompt`.
        """
        fmt = self.prompt_format
        if fmt is None:
            return prompt
        return fmt.render(self, messages if messages and fmt.chat_template else prompt)

    def encode_prompt(self, prompt: str, messages: Sequence[Message] | None = None) -> list[int]:
        """Ids of a policy prompt: `render_prompt`, with the checkpoint's own BOS convention."""
        return self.encode(self.render_prompt(prompt, messages), add_bos=self.default_add_bos)

    def batch_encode(
        self,
        texts: Sequence[str],
        *,
        max_length: int | None = None,
        left_pad: bool = True,
        add_bos: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encodes and pads a batch.

        Args:
          texts: B strings.
          max_length: pad every row to this length (a shape bucket); a row longer
            than it is an error naming the row. None pads to the longest row.
          left_pad: pad on the left (prompts, so that generation continues from
            the last column) or on the right (completions).
          add_bos: prepend `bos_id` to every row.

        Returns:
          ids: [B, L] int32, padding filled with `pad_id`.
          mask: [B, L] float32, 1.0 on real tokens.
        """
        if isinstance(texts, str):
            raise TokenizerError("batch_encode takes a list of strings, got one string")
        rows = [self.encode(t, add_bos=add_bos) for t in texts]
        if not rows:
            raise TokenizerError("batch_encode got an empty batch")
        longest = max(len(r) for r in rows)
        length = longest if max_length is None else max_length
        if longest > length:
            row = next(i for i, r in enumerate(rows) if len(r) > length)
            raise TokenizerError(
                f"row {row} has {len(rows[row])} tokens, more than max_length={length}"
            )
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(rows), length), dtype=np.float32)
        for i, r in enumerate(rows):
            if not r:
                continue
            if left_pad:
                ids[i, length - len(r) :] = r
                mask[i, length - len(r) :] = 1.0
            else:
                ids[i, : len(r)] = r
                mask[i, : len(r)] = 1.0
        return ids, mask

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> str:
        """Renders `messages` ([{"role": ..., "content": ...}]) with the chat template.

        Uses the same jinja2 environment as `transformers` (trim_blocks,
        lstrip_blocks, `tojson`, `raise_exception`), so templates shipped with
        checkpoints render identically. Extra keyword arguments (`tools`,
        `enable_thinking`, ...) are passed to the template.
        """
        if self.chat_template is None:
            raise TokenizerError(
                f"{self.source}: no chat template (looked for chat_template.jinja, "
                "chat_template.json and tokenizer_config.json['chat_template'])"
            )
        template = _compile_template(self.chat_template)
        return template.render(
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            **self.special_token_strings(),
            **template_kwargs,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, vocab_size={self.vocab_size}, "
            f"eos_id={self.eos_id}, pad_id={self.pad_id}, bos_id={self.bos_id})"
        )


class CharTokenizer(Tokenizer):
    """Fixed character vocabulary for procedural tasks.

    Ids: <pad>=0, <bos>=1, <eos>=2, newline=3, then printable ASCII 32..126
    (space to "~") at 4..98; vocab_size = 99. Any other character is an error.
    """

    SPECIALS = ("<pad>", "<bos>", "<eos>")
    CHARS = "\n" + "".join(chr(c) for c in range(32, 127))

    def __init__(self):
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self.stop_ids = (self.eos_id,)
        self.chat_template = None
        self.source = "char"
        self._char_to_id = {c: i + len(self.SPECIALS) for i, c in enumerate(self.CHARS)}
        self._id_to_text = list(self.SPECIALS) + list(self.CHARS)
        self.vocab_size = len(self._id_to_text)

    def encode(self, text: str, *, add_bos: bool = False) -> list[int]:
        ids = [self.bos_id] if add_bos else []
        table = self._char_to_id
        for position, char in enumerate(text):
            token = table.get(char)
            if token is None:
                raise TokenizerError(
                    f"character {char!r} (U+{ord(char):04X}) at position {position} is not "
                    "in the char vocabulary (printable ASCII and newline)"
                )
            ids.append(token)
        return ids

    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        out = []
        n = len(self.SPECIALS)
        for token in ids:
            token = int(token)
            if n <= token < self.vocab_size:
                out.append(self._id_to_text[token])
            elif skip_special:
                continue
            elif 0 <= token < n:
                out.append(self._id_to_text[token])
            else:
                raise TokenizerError(
                    f"token id {token} is outside the char vocabulary (size {self.vocab_size})"
                )
        return "".join(out)

    def special_token_strings(self) -> dict[str, str]:
        return {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>"}


class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizer.json` (the `tokenizers` library).

    Special tokens come from `tokenizer_config.json` beside it (`eos_token`,
    `pad_token`, `bos_token`, `chat_template`) and `generation_config.json`
    (`eos_token_id`, extra stop ids). Without a config, eos is the first of
    `<|endoftext|>`, `<|end_of_text|>`, `</s>`, `<eos>`, `<|im_end|>`, `<|eot_id|>`
    present in the vocabulary. A missing pad token falls back to eos.
    """

    def __init__(self, path: str, *, config: Mapping[str, Any] | None = None):
        import tokenizers

        self.source = path
        try:
            self._tok = tokenizers.Tokenizer.from_file(path)
        except Exception as e:  # the library raises bare Exceptions on bad JSON
            raise TokenizerError(f"{path}: not a readable tokenizer.json ({e})") from None
        config = dict(config or {})
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1
        self._specials = {i for i, t in self._tok.get_added_tokens_decoder().items() if t.special}
        self._names: dict[str, str] = {}

        def token_id(key: str, *, required: bool) -> int | None:
            name = _token_name(config.get(key))
            if name is None:
                if not required:
                    return None
                candidates = [t for t in _KNOWN_EOS if t in vocab]
                if not candidates:
                    raise TokenizerError(
                        f"{path}: cannot tell the {key}: no tokenizer_config.json with "
                        f"{key!r} and none of {', '.join(_KNOWN_EOS)} in the vocabulary"
                    )
                name = candidates[0]
            if name not in vocab:
                raise TokenizerError(f"{path}: {key} {name!r} is not in the vocabulary")
            self._names[key] = name
            return vocab[name]

        self.eos_id = token_id("eos_token", required=True)
        pad = token_id("pad_token", required=False)
        self.pad_id = self.eos_id if pad is None else pad
        self.bos_id = token_id("bos_token", required=False)
        self._specials |= {i for i in (self.eos_id, self.pad_id, self.bos_id) if i is not None}
        stops = [self.eos_id]
        for extra in config.get("_generation_eos_ids", []):
            if extra not in stops:
                stops.append(int(extra))
        self.stop_ids = tuple(stops)
        self.chat_template = config.get("_chat_template")
        plain = self._tok.encode("a", add_special_tokens=False).ids
        special = self._tok.encode("a", add_special_tokens=True).ids
        self.default_add_bos = bool(config.get("add_bos_token", False)) or (
            self.bos_id is not None and special[:1] == [self.bos_id] and len(special) > len(plain)
        )

    def encode(self, text: str, *, add_bos: bool = False) -> list[int]:
        # Special tokens are added by this class, not by the post-processor, so
        # that `add_bos` means the same thing for every tokenizer.
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if add_bos:
            if self.bos_id is None:
                raise TokenizerError(f"{self.source}: add_bos=True but the tokenizer has no bos")
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            if not skip_special:
                raise TokenizerError(
                    f"token id {bad[0]} is outside the vocabulary of {self.source} "
                    f"(size {self.vocab_size})"
                )
            ids = [i for i in ids if 0 <= i < self.vocab_size]
        if skip_special:
            ids = [i for i in ids if i not in self._specials]
        return self._tok.decode(ids, skip_special_tokens=skip_special)

    def special_token_strings(self) -> dict[str, str]:
        return dict(self._names)


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece `.model` file (Llama 2, Gemma, T5-style checkpoints).

    Special ids come from the model (`bos_id()`, `eos_id()`, `pad_id()`) unless a
    `tokenizer_config.json` beside it names them. A model without a pad piece
    pads with eos.
    """

    def __init__(self, path: str, *, config: Mapping[str, Any] | None = None):
        import sentencepiece as spm

        self.source = path
        try:
            self._sp = spm.SentencePieceProcessor(model_file=path)
        except Exception as e:  # sentencepiece raises OSError / RuntimeError
            raise TokenizerError(f"{path}: not a readable sentencepiece model ({e})") from None
        config = dict(config or {})
        self.vocab_size = int(self._sp.get_piece_size())

        def token_id(key: str, default: int) -> int | None:
            name = _token_name(config.get(key))
            if name is not None:
                i = self._sp.piece_to_id(name)
                if i == self._sp.unk_id() and name != self._sp.id_to_piece(i):
                    raise TokenizerError(f"{path}: {key} {name!r} is not in the vocabulary")
                return int(i)
            return None if default < 0 else int(default)

        eos = token_id("eos_token", self._sp.eos_id())
        if eos is None:
            raise TokenizerError(f"{path}: the sentencepiece model has no eos piece")
        self.eos_id = eos
        pad = token_id("pad_token", self._sp.pad_id())
        self.pad_id = self.eos_id if pad is None else pad
        self.bos_id = token_id("bos_token", self._sp.bos_id())
        self._specials = {i for i in range(self.vocab_size) if self._sp.is_control(i)}
        self._specials |= {i for i in (self.eos_id, self.pad_id, self.bos_id) if i is not None}
        stops = [self.eos_id]
        for extra in config.get("_generation_eos_ids", []):
            if extra not in stops:
                stops.append(int(extra))
        self.stop_ids = tuple(stops)
        self.chat_template = config.get("_chat_template")
        self.default_add_bos = self.bos_id is not None and bool(config.get("add_bos_token", False))

    def encode(self, text: str, *, add_bos: bool = False) -> list[int]:
        ids = [int(i) for i in self._sp.encode(text)]
        if add_bos:
            if self.bos_id is None:
                raise TokenizerError(f"{self.source}: add_bos=True but the tokenizer has no bos")
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special:
            return self._sp.decode(
                [i for i in ids if 0 <= i < self.vocab_size and i not in self._specials]
            )
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise TokenizerError(
                f"token id {bad[0]} is outside the vocabulary of {self.source} "
                f"(size {self.vocab_size})"
            )
        # sentencepiece drops control pieces when decoding: render them by hand.
        out, run = [], []
        for i in ids:
            if i in self._specials:
                out.append(self._sp.decode(run))
                out.append(self._sp.id_to_piece(i))
                run = []
            else:
                run.append(i)
        out.append(self._sp.decode(run))
        return "".join(out)

    def special_token_strings(self) -> dict[str, str]:
        names = {"eos_token": self._sp.id_to_piece(self.eos_id)}
        names["pad_token"] = self._sp.id_to_piece(self.pad_id)
        if self.bos_id is not None:
            names["bos_token"] = self._sp.id_to_piece(self.bos_id)
        return names


def load_tokenizer(spec: str | os.PathLike) -> Tokenizer:
    """Loads a tokenizer from `"char"`, a checkpoint directory, or a file.

    Args:
      spec: `"char"` for `CharTokenizer`; a directory holding `tokenizer.json`
        (preferred) or `tokenizer.model`, with optional `tokenizer_config.json`,
        `generation_config.json` and `chat_template.jinja` / `chat_template.json`;
        or a path to a `.json` or `.model` file (the same optional files are
        read from its directory).

    Returns:
      A `Tokenizer`.
    """
    spec = os.fspath(spec)
    if spec == "char":
        return CharTokenizer()
    if os.path.isdir(spec):
        directory = spec
        json_path = os.path.join(spec, "tokenizer.json")
        model_path = os.path.join(spec, "tokenizer.model")
        if os.path.isfile(json_path):
            path = json_path
        elif os.path.isfile(model_path):
            path = model_path
        else:
            raise TokenizerError(
                f"{spec}: directory has neither tokenizer.json nor tokenizer.model"
            )
    elif os.path.isfile(spec):
        path, directory = spec, os.path.dirname(spec) or "."
    else:
        raise TokenizerError(
            f"{spec}: no such file or directory (a tokenizer is 'char', a checkpoint "
            "directory, or a tokenizer.json / .model file)"
        )
    config = _read_config(directory)
    if path.endswith(".json"):
        return HFTokenizer(path, config=config)
    if path.endswith(".model"):
        return SentencePieceTokenizer(path, config=config)
    raise TokenizerError(f"{path}: unknown tokenizer file type (expected .json or .model)")


def check_vocab(tokenizer: Tokenizer, model_vocab_size: int) -> None:
    """Raises when the tokenizer can produce ids the model has no embedding for.

    A model vocabulary larger than the tokenizer's is fine (checkpoints pad it
    to a multiple of 64 or 128); a smaller one is an error naming both sizes.
    """
    if tokenizer.vocab_size > model_vocab_size:
        raise TokenizerError(
            f"tokenizer {tokenizer.source} has vocab_size {tokenizer.vocab_size} but the model "
            f"has vocab_size {model_vocab_size}: ids >= {model_vocab_size} have no embedding"
        )


def _token_name(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string or {"content": ...}."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get("content")
    return str(value)


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def _read_config(directory: str) -> dict[str, Any]:
    """tokenizer_config.json plus the chat template and generation stop ids, if present."""
    config: dict[str, Any] = {}
    path = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(path):
        config = dict(_read_json(path))
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("default", template[0].get("template") if template else None)
    jinja_path = os.path.join(directory, "chat_template.jinja")
    json_path = os.path.join(directory, "chat_template.json")
    if os.path.isfile(jinja_path):
        with open(jinja_path, encoding="utf-8") as f:
            template = f.read()
    elif os.path.isfile(json_path):
        template = _read_json(json_path).get("chat_template", template)
    config["_chat_template"] = template
    generation_path = os.path.join(directory, "generation_config.json")
    if os.path.isfile(generation_path):
        eos = _read_json(generation_path).get("eos_token_id")
        config["_generation_eos_ids"] = (
            [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        )
    return config


@functools.lru_cache(maxsize=16)
def _compile_template(source: str):
    """A jinja2 template in the environment `transformers` renders chat templates in.

    Cached by source: every policy prompt is rendered through it, and a compile
    costs milliseconds, more than the rendering itself.
    """
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ImportError("chat templates need jinja2: pip install jinja2") from None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)
