"""PRM-guided search: beam and greedy step search against a brute force on hand-made trees,
early rejection's token accounting, Refined-BoN's regeneration point, the policy expander."""

import itertools

import jax
import numpy as np
import pytest

from rewardjax import models
from rewardjax.inference import search
from rewardjax.inference.selection import prm_aggregate
from rewardjax.sampling import stepwise
from rewardjax.tokenizers import CharTokenizer

TOK = CharTokenizer()
EOS = "<eos>"


def _encode(text: str) -> list[int]:
    pieces = text.split(EOS)
    ids = TOK.encode(pieces[0])
    for piece in pieces[1:]:
        ids += [TOK.eos_id, *TOK.encode(piece)]
    return ids


class ScriptedExpander:
    """An `Expander` over a hand-made tree: tree[prompt][node text] = child steps.

    A row that reaches a node takes child (copy + attempt) mod the number of
    children, where copy counts the row among the copies one `fork` made of
    the same source row and attempt counts the `truncate`s of the row (a
    regeneration takes the next child). A row stopped mid-step finishes the
    child its partial text belongs to.
    """

    def __init__(self, tree, max_rows=64):
        self.tree, self.max_rows = tree, max_rows
        self.tokenizer, self.separator = TOK, "\n"
        self.separator_ids = (TOK.encode("\n")[0],)
        self.truncations = []

    def start(self, prompts):
        return [dict(prompt=TOK.decode(p), tokens=[], copy=0, attempt=0) for p in prompts]

    def fork(self, state, rows):
        seen = {}
        out = []
        for r in rows:
            copy = seen.get(int(r), 0)
            seen[int(r)] = copy + 1
            out.append(dict(state[int(r)], tokens=list(state[int(r)]["tokens"]), copy=copy))
        return out

    def _next(self, row, text):
        """The text after `text` up to the end of its current step (EOS included)."""
        nodes = self.tree[row["prompt"]]
        node = max((k for k in nodes if text.startswith(k)), key=len)
        partial = text[len(node) :]
        children = nodes[node]
        if partial:
            (child,) = [c for c in children if c.startswith(partial)]
        else:
            child = children[(row["copy"] + row["attempt"]) % len(children)]
        return child[len(partial) :]

    def extend(self, state, *, rng, row_ids, run, to_step_end, max_tokens):
        emitted = []
        for row, go in zip(state, run):
            text = TOK.decode(row["tokens"], skip_special=False)
            out = ""
            while go and not (text + out).endswith(EOS):
                out += self._next(row, text + out)
                if to_step_end:
                    break
            ids = _encode(out)[: max_tokens or None]
            row["tokens"] += ids
            emitted.append(ids)
        done = np.array([TOK.eos_id in row["tokens"] for row in state])
        return state, emitted, done

    def truncate(self, state, keep):
        self.truncations.append([int(k) for k in keep])
        for row, k in zip(state, keep):
            if k < len(row["tokens"]):
                row["tokens"] = row["tokens"][:k]
                row["attempt"] += 1
        return state


class TableScorer:
    """Step score = table[step text], else table[its first character]; records its calls."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def __call__(self, prompts, steps):
        self.calls.append([list(s) for s in steps])
        return [np.array([self.table.get(s, self.table.get(s[:1])) for s in row]) for row in steps]


# Greedy (W = 1) keeps A, then A's best child; beam (W = 2) also keeps B, whose child
# B1 beats every A path under min: a path hidden behind a worse first step.
HAND_TREE = {
    "": ["A\n", "B\n", "C\n", "D\n"],
    "A\n": ["E\n", "F\n"],
    "B\n": ["G\n", "H\n"],
    "C\n": ["I<eos>", "J<eos>"],
    "D\n": ["K<eos>", "L<eos>"],
    "A\nE\n": ["M<eos>", "N<eos>"],
    "A\nF\n": ["O<eos>", "P<eos>"],
    "B\nG\n": ["Q<eos>", "R<eos>"],
    "B\nH\n": ["S<eos>", "T<eos>"],
}
HAND_SCORES = {"A": 0.9, "B": 0.6, "C": 0.2, "D": 0.1, "E": 0.3, "F": 0.25, "G": 0.8}
HAND_SCORES |= {"H": 0.1, "I": 0.5, "J": 0.4, "K": 0.3, "L": 0.2, "M": 0.95, "N": 0.28}
HAND_SCORES |= {"O": 0.22, "P": 0.21, "Q": 0.55, "R": 0.65, "S": 0.05, "T": 0.04}


def _text(result, p=0):
    return TOK.decode(result.tokens[p], skip_special=False)


def test_greedy_and_beam_pick_the_hand_computed_paths():
    prompts = [TOK.encode("q")]
    trees = {"q": HAND_TREE}
    kw = dict(rng=jax.random.key(0), max_steps=5, aggregation="min")
    greedy = search.greedy_step_search(
        ScriptedExpander(trees), TableScorer(HAND_SCORES), prompts, expansions=2, **kw
    )
    # A (0.9) over B; E (min 0.3) over F; M, N: min 0.3 vs 0.28.
    assert _text(greedy) == "A\nE\nM<eos>"
    np.testing.assert_allclose(greedy.scores, [0.3])
    scorer = TableScorer(HAND_SCORES)
    beam = search.beam_search(
        ScriptedExpander(trees), scorer, prompts, beam_width=2, expansions=2, **kw
    )
    # Step 1 keeps A, B; step 2 keeps G (0.6), E (0.3); step 3: R = min(0.6, 0.8, 0.65).
    assert _text(beam) == "B\nG\nR<eos>"
    np.testing.assert_allclose(beam.scores, [0.6])
    # Every root-to-leaf path: beam found the best one.
    assert beam.scores[0] == max(_brute_force_scores(HAND_TREE, HAND_SCORES, "min").values())
    # 4 first steps, 4 second steps, 4 leaves; each step of 2 tokens (char + \n or EOS).
    np.testing.assert_array_equal(beam.generated_tokens, [24])
    assert beam.scorer_calls == len(scorer.calls) == 3
    np.testing.assert_array_equal(beam.scored_sequences, [12])
    np.testing.assert_array_equal(beam.scored_tokens, [4 * 2 + 4 * 4 + 4 * 6])
    # Compute: the prompt (L tokens) is prefilled once; a token at completion index i
    # (from 1) attends L + i positions. Each round, 4 rows add 2 tokens after
    # 0, 2, 4 cached ones (forks copy the cache, nothing is recomputed).
    length = len(prompts[0])
    rounds = sum(4 * ((length + k + 1) + (length + k + 2)) for k in (0, 2, 4))
    np.testing.assert_array_equal(beam.prompt_tokens, [length])
    np.testing.assert_array_equal(beam.policy_attended, [length * (length + 1) / 2 + rounds])
    # The scorer reads prompt + solution whole, each time: 4 solutions of 2, 4, 6 tokens.
    read = [length + c for c in (2, 4, 6) for _ in range(4)]
    np.testing.assert_array_equal(beam.scorer_input_tokens, [sum(read)])
    np.testing.assert_array_equal(beam.scorer_attended, [sum(r * (r + 1) / 2 for r in read)])


def _brute_force_scores(tree, table, aggregation, node=""):
    """Aggregated score of every root-to-leaf path of the tree."""
    out = {}
    for child in tree[node]:
        path = node + child
        if path.endswith(EOS):
            steps = path[: -len(EOS)].split("\n")
            out[path] = prm_aggregate([table[s[0]] for s in steps], method=aggregation)
        else:
            out.update(_brute_force_scores(tree, table, aggregation, path))
    return out


def _reference_beam(tree, table, *, width, expansions, max_steps, aggregation):
    """Beam search straight on the tree: the W best unfinished paths, M children each."""

    def score(path):
        steps = path.removesuffix(EOS).removesuffix("\n").split("\n")
        return prm_aggregate([table.get(s, table.get(s[:1])) for s in steps], method=aggregation)

    frontier, pool = [""], []
    for step in range(max_steps):
        children = width * expansions if step == 0 else expansions
        paths = [n + tree[n][c % len(tree[n])] for n in frontier for c in range(children)]
        last = step == max_steps - 1
        pool += [p for p in paths if p.endswith(EOS) or last]
        open_ = [p for p in paths if not (p.endswith(EOS) or last)]
        order = sorted(range(len(open_)), key=lambda i: (-score(open_[i]), i))
        frontier = [open_[i] for i in order[:width]]
        if not frontier:
            break
    return max(pool, key=score), max(score(p) for p in pool)


def _random_tree(rng, depth, root_children, children):
    names = (f"n{i}" for i in itertools.count())
    tree, table, frontier = {}, {}, [""]
    for level in range(depth):
        nxt = []
        for node in frontier:
            kids = []
            for _ in range(root_children if level == 0 else children):
                name = next(names)
                table[name] = float(rng.uniform(0.05, 0.95))
                # Leaves at the last level; a few paths end early.
                leaf = level == depth - 1 or rng.uniform() < 0.2
                kids.append(name + (EOS if leaf else "\n"))
            tree[node] = kids
            nxt += [node + k for k in kids if not k.endswith(EOS)]
        frontier = nxt
    return tree, table


@pytest.mark.parametrize(
    "width, expansions, aggregation, max_steps",
    [(1, 2, "min", 4), (2, 2, "min", 4), (2, 3, "last", 4), (3, 2, "prod", 4), (2, 2, "mean", 2)],
)
def test_beam_search_equals_a_reference_on_random_trees(width, expansions, aggregation, max_steps):
    rng = np.random.default_rng(width * 10 + expansions)
    trees = [_random_tree(rng, 3, width * expansions, expansions) for _ in range(3)]
    expander = ScriptedExpander({f"q{i}": tree for i, (tree, _) in enumerate(trees)})
    for i, (tree, table) in enumerate(trees):
        result = search.beam_search(
            expander,
            TableScorer(table),
            [TOK.encode(f"q{i}")],
            rng=jax.random.key(1),
            beam_width=width,
            expansions=expansions,
            max_steps=max_steps,
            aggregation=aggregation,
        )
        path, best = _reference_beam(
            tree,
            table,
            width=width,
            expansions=expansions,
            max_steps=max_steps,
            aggregation=aggregation,
        )
        assert _text(result) == path
        np.testing.assert_allclose(result.scores, [best])


def test_beam_search_batches_problems_and_chunks_by_max_rows():
    trees = {"q": HAND_TREE, "r": {**HAND_TREE, "": ["D\n", "C\n", "B\n", "A\n"]}}
    prompts = [TOK.encode("q"), TOK.encode("r"), TOK.encode("q")]
    kw = dict(rng=jax.random.key(0), beam_width=2, expansions=2, max_steps=5)
    together = search.beam_search(ScriptedExpander(trees), TableScorer(HAND_SCORES), prompts, **kw)
    # max_rows = 5 fits one problem (4 rows) at a time.
    apart = search.beam_search(
        ScriptedExpander(trees, max_rows=5), TableScorer(HAND_SCORES), prompts, **kw
    )
    assert [_text(together, p) for p in range(3)] == ["B\nG\nR<eos>"] * 3
    assert together.tokens == apart.tokens
    np.testing.assert_array_equal(together.generated_tokens, apart.generated_tokens)


# Four first steps of 2, 3, 4 and 2 tokens; the rest of each path is hand-counted.
ER_TREE = {
    "": ["a\n", "bb\n", "ccc\n", "d\n"],
    "a\n": ["wwwww<eos>"],
    "bb\n": ["xyz<eos>"],
    "ccc\n": ["vvvvvvv<eos>"],
    "d\n": ["qq<eos>"],
}
ER_SCORES = {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.7, "w": 0.99, "x": 0.8, "v": 0.99, "q": 0.6}


def test_early_rejection_token_accounting_by_hand():
    prompts = [TOK.encode("q")]
    kw = dict(rng=jax.random.key(0), n=4, aggregation="min")
    full = search.best_of_n(ScriptedExpander({"q": ER_TREE}), TableScorer(ER_SCORES), prompts, **kw)
    # a: 2 + 6, bb: 3 + 4, ccc: 4 + 8, d: 2 + 3.
    np.testing.assert_array_equal(full.generated_tokens, [32])
    # Under min: a w 0.1, bb xyz 0.8, ccc v 0.5, d qq 0.6.
    assert _text(full) == "bb\nxyz<eos>"
    scorer = TableScorer(ER_SCORES)
    early = search.early_rejection(
        ScriptedExpander({"q": ER_TREE}), scorer, prompts, keep_fraction=0.5, **kw
    )
    # First steps of all four (11 tokens), then bb and d (the two best: 0.9, 0.7) to the end.
    np.testing.assert_array_equal(early.generated_tokens, [11 + 4 + 3])
    assert [TOK.decode(c.tokens, skip_special=False) for c in early.pools[0]] == [
        "bb\nxyz<eos>",
        "d\nqq<eos>",
    ]
    np.testing.assert_array_equal(early.scored_sequences, [6])
    np.testing.assert_array_equal(early.scored_tokens, [11 + 7 + 5])
    assert _text(early) == "bb\nxyz<eos>"
    # The kept candidates are the best-of-N candidates themselves.
    full_texts = {TOK.decode(c.tokens, skip_special=False) for c in full.pools[0]}
    assert {TOK.decode(c.tokens, skip_special=False) for c in early.pools[0]} <= full_texts


def test_early_rejection_after_a_token_prefix():
    scorer = TableScorer(ER_SCORES)
    early = search.early_rejection(
        ScriptedExpander({"q": ER_TREE}),
        scorer,
        [TOK.encode("q")],
        rng=jax.random.key(0),
        n=4,
        keep_fraction=0.25,
        prefix_tokens=2,
    )
    # Two tokens of each (8), scored as partial steps; b keeps on: 1 + 4 more tokens.
    assert scorer.calls == [[["a"], ["bb"], ["cc"], ["d"]], [["bb", "xyz"]]]
    np.testing.assert_array_equal(early.generated_tokens, [8 + 5])
    assert _text(early) == "bb\nxyz<eos>"


# Sample 0 is a k z (k flagged: keep "a\n"), sample 1 is c f (c flagged: keep nothing).
# A regeneration takes the next child at each node (`ScriptedExpander`).
RB_TREE = {
    "": ["a\n", "c\n"],
    "a\n": ["k\n", "m\n"],
    "c\n": ["e<eos>", "f<eos>"],
    "a\nk\n": ["z<eos>"],
    "a\nm\n": ["y<eos>"],
}
RB_SCORES = {"a": 0.9, "k": 0.2, "m": 0.8, "y": 0.85, "z": 0.9, "c": 0.3, "e": 0.9, "f": 0.9}


def test_refined_best_of_n_regenerates_from_the_first_flagged_step():
    expander = ScriptedExpander({"q": RB_TREE})
    result = search.refined_best_of_n(
        expander,
        TableScorer(RB_SCORES),
        [TOK.encode("q")],
        rng=jax.random.key(0),
        n=2,
        threshold=0.5,
        rounds=3,
    )
    # Round 1 cuts both; round 2 only the regenerated c row (now a k z again, k flagged);
    # round 3 finds nothing flagged among round 2's regenerations and stops.
    assert expander.truncations == [[2, 0], [6, 2]]
    pool = [(TOK.decode(c.tokens, skip_special=False), c.origin) for c in result.pools[0]]
    assert pool == [
        ("a\nk\nz<eos>", "sample"),
        ("c\nf<eos>", "sample"),
        ("a\nm\ny<eos>", "refined"),
        ("a\nk\nz<eos>", "refined"),
        ("a\nm\ny<eos>", "refined"),
    ]
    assert _text(result) == "a\nm\ny<eos>"
    np.testing.assert_allclose(result.scores, [0.8])
    # 6 + 4 sampled; round 1: 4 (m y) + 6 (a k z); round 2: 4 (m y).
    np.testing.assert_array_equal(result.generated_tokens, [6 + 4 + 4 + 6 + 4])
    # A regeneration attends to the kept prefix in the cache: (cached, new) tokens
    # (0, 6), (0, 4), then (2, 4), (0, 6), then (2, 4).
    length = len(TOK.encode("q"))
    decode = sum(
        sum(length + cached + i for i in range(1, new + 1))
        for cached, new in ((0, 6), (0, 4), (2, 4), (0, 6), (2, 4))
    )
    np.testing.assert_array_equal(result.policy_attended, [length * (length + 1) / 2 + decode])
    # Zero rounds is plain best-of-N.
    plain = search.refined_best_of_n(
        ScriptedExpander({"q": RB_TREE}),
        TableScorer(RB_SCORES),
        [TOK.encode("q")],
        rng=jax.random.key(0),
        n=2,
        threshold=0.5,
        rounds=0,
    )
    assert len(plain.pools[0]) == 2 and _text(plain) == "c\nf<eos>"  # min 0.3 > 0.2


def test_split_step_tokens_and_first_flagged_step():
    sep = 3
    assert search.split_step_tokens([5, 3, 6, 7, 3, 2], sep) == [[5, 3], [6, 7, 3], [2]]
    assert search.split_step_tokens([5, 3], sep) == [[5, 3]]
    assert search.split_step_tokens([], sep) == [[]]
    assert search.first_flagged_step(np.array([0.9, 0.4, 0.2]), 0.5) == 1
    assert search.first_flagged_step(np.array([0.9, 0.6]), 0.5) is None


# --- the policy expander on the KV-cache sampler ----------------------------------------


@pytest.fixture(scope="module")
def policy():
    config = models.preset("tiny", num_layers=1, vocab_size=99, initializer_range=0.5)
    return config, models.init_params(config, jax.random.key(0))


def _letter_scorer(prompts, steps):
    """A stand-in PRM: a step scores the share of its characters that are letters."""
    return [np.array([sum(c.isalpha() for c in s) / max(len(s), 1) for s in row]) for row in steps]


def test_policy_beam_search_is_deterministic_and_compiles_once(policy):
    config, params = policy
    expander = search.PolicyExpander(
        config, params, TOK, separator=" ", max_new_tokens=24, max_step_tokens=6, max_rows=16
    )
    prompts = [TOK.encode("12+3="), TOK.encode("7*8=")]
    kw = dict(beam_width=2, expansions=2, max_steps=4)
    first = search.beam_search(expander, _letter_scorer, prompts, rng=jax.random.key(0), **kw)
    compiled = stepwise._extend_jit._cache_size()
    again = search.beam_search(expander, _letter_scorer, prompts, rng=jax.random.key(0), **kw)
    other = search.beam_search(expander, _letter_scorer, prompts, rng=jax.random.key(5), **kw)
    assert stepwise._extend_jit._cache_size() == compiled
    assert first.tokens == again.tokens and first.tokens != other.tokens
    for p in range(2):
        # The answer is a pool member and the best of it; the accounting adds up.
        pool = first.pools[p]
        assert first.tokens[p] in [c.tokens for c in pool]
        assert first.scores[p] == max(c.score for c in pool)
        assert first.generated_tokens[p] >= max(len(c.tokens) for c in pool)
        steps = search.split_step_tokens(first.tokens[p], expander.separator_ids)
        assert len(steps) <= 4 or len(first.tokens[p]) == 24


def test_policy_early_rejection_keeps_best_of_n_candidates(policy):
    config, params = policy
    expander = search.PolicyExpander(
        config, params, TOK, separator=" ", max_new_tokens=24, max_step_tokens=6, max_rows=16
    )
    prompts = [TOK.encode("12+3=")]
    kw = dict(rng=jax.random.key(2), n=4)
    full = search.best_of_n(expander, _letter_scorer, prompts, **kw)
    early = search.early_rejection(
        expander, _letter_scorer, prompts, keep_fraction=0.5, prefix_tokens=4, **kw
    )
    full_tokens = [c.tokens for c in full.pools[0]]
    assert all(c.tokens in full_tokens for c in early.pools[0])
    assert early.generated_tokens[0] < full.generated_tokens[0]


def test_policy_refined_best_of_n_keeps_the_steps_before_the_flagged_one(policy):
    config, params = policy
    # "i" is frequent in this random model's text: solutions of several steps.
    expander = search.PolicyExpander(
        config, params, TOK, separator="i", max_new_tokens=24, max_step_tokens=24, max_rows=16
    )
    result = search.refined_best_of_n(
        expander,
        _letter_scorer,
        [TOK.encode("12+3=")],
        rng=jax.random.key(4),
        n=4,
        threshold=0.6,
        rounds=1,
    )
    samples, refined = result.pools[0][:4], result.pools[0][4:]
    prefixes = []
    for c in samples:
        step = search.first_flagged_step(c.step_scores, 0.6)
        if step is not None:
            steps = search.split_step_tokens(c.tokens, expander.separator_ids)
            prefixes.append((c, list(itertools.chain.from_iterable(steps[:step]))))
    assert len(refined) == len(prefixes) and any(kept for _, kept in prefixes)
    regenerated = 0
    for new, (old, kept) in zip(refined, prefixes):
        assert new.origin == "refined" and new.tokens[: len(kept)] == kept
        assert new.tokens != old.tokens
        regenerated += len(new.tokens) - len(kept)
    total = sum(len(c.tokens) for c in samples) + regenerated
    np.testing.assert_array_equal(result.generated_tokens, [total])


def test_bad_input_is_refused_before_any_compilation(policy):
    config, params = policy
    with pytest.raises(ValueError, match="does not end in its own token"):
        search.PolicyExpander(config, params, TOK, separator="\n\n")
    expander = search.PolicyExpander(config, params, TOK, separator="\n", max_rows=8)
    kw = dict(rng=jax.random.key(0), max_steps=2)
    with pytest.raises(ValueError, match=r"beam_width × expansions = 3×3 = 9 rows .* max_rows=8"):
        search.beam_search(expander, _letter_scorer, [[5]], beam_width=3, expansions=3, **kw)

    class OtherPRM:
        separator = " "

        def step_scores(self, prompts, steps):
            return _letter_scorer(prompts, steps)

    with pytest.raises(ValueError, match="the scorer reads steps at ' '"):
        search.beam_search(
            expander, OtherPRM().step_scores, [[5]], beam_width=1, expansions=2, **kw
        )
    with pytest.raises(ValueError, match="unknown aggregation 'max'"):
        search.best_of_n(
            expander, _letter_scorer, [[5]], rng=jax.random.key(0), n=2, aggregation="max"
        )
    with pytest.raises(ValueError, match="keep_fraction=0"):
        search.early_rejection(
            expander, _letter_scorer, [[5]], rng=jax.random.key(0), n=2, keep_fraction=0
        )


def test_scripted_tree_helpers_are_sound():
    # The brute force sees every leaf of the hand tree once.
    assert len(_brute_force_scores(HAND_TREE, HAND_SCORES, "min")) == 12
    assert list(itertools.islice(_encode("a<eos>b"), 3)) == [
        TOK.encode("a")[0],
        2,
        TOK.encode("b")[0],
    ]


class MergedTokenizer(CharTokenizer):
    """The char vocabulary plus one BPE-like merge: a token whose text is ".\\n"."""

    def __init__(self):
        super().__init__()
        self.merged = self.vocab_size
        self.vocab_size += 1

    def decode(self, ids, *, skip_special=True):
        return "".join(
            ".\n"
            if i == self.merged
            else super(MergedTokenizer, self).decode([i], skip_special=skip_special)
            for i in ids
        )


class FixedExpander:
    """Every row emits the same tokens, all at once."""

    def __init__(self, tokenizer, tokens):
        self.tokenizer, self.tokens, self.max_rows = tokenizer, tokens, 8
        self.separator = "\n"
        self.separator_ids = search.separator_token_ids(tokenizer, "\n")

    def start(self, prompts):
        return [[] for _ in prompts]

    def fork(self, state, rows):
        return [list(state[r]) for r in rows]

    def extend(self, state, *, rng, row_ids, run, to_step_end, max_tokens):
        emitted = [list(self.tokens[len(row) :]) if go else [] for row, go in zip(state, run)]
        for row, e in zip(state, emitted):
            row += e
        return state, emitted, np.ones(len(state), bool)

    def truncate(self, state, keep):
        return [row[:k] for row, k in zip(state, keep)]


def test_a_token_that_merges_the_separator_ends_a_step():
    tok = MergedTokenizer()
    # Tokens ending with "\n": its own and the merge; none of the others.
    assert search.separator_token_ids(tok, "\n") == (tok.encode("\n")[0], tok.merged)
    assert search.separator_token_ids(TOK, "\n") == tuple(TOK.encode("\n"))
    seen = []

    def scorer(prompts, steps):
        seen.extend(steps)
        return [np.full(len(s), 0.9) for s in steps]

    # "ab" + ".\n" (merged) + "c" + "\n" + "d" + EOS: three steps, the "." kept in the first.
    tokens = [*tok.encode("ab"), tok.merged, *tok.encode("c\nd"), tok.eos_id]
    result = search.best_of_n(
        FixedExpander(tok, tokens), scorer, [tok.encode("q")], rng=jax.random.key(0), n=1
    )
    assert seen == [["ab.", "c", "d"]]
    assert search.split_step_tokens(result.tokens[0], (tok.encode("\n")[0], tok.merged)) == [
        [*tok.encode("ab"), tok.merged],
        tok.encode("c\n"),
        [*tok.encode("d"), tok.eos_id],
    ]
