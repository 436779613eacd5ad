"""Share prepared corpora on the Hugging Face Hub: 16 kHz audio embedded in Parquet, one config per corpus.

`push_corpora` pushes each corpus with `datasets.Dataset.push_to_hub(config_name=<corpus>)` (the repository
is created private unless asked otherwise), then rewrites the text of the dataset card (README.md: licences,
citations, counts, schema) around the ``configs:`` metadata that push_to_hub keeps. Pushing corpora in
separate runs adds configs: earlier ones stay listed and described. Each corpus is one config with one split
``train`` holding all its files::

    datasets.load_dataset(repo_id, "emodb", split="train")

Make train/validation/test splits after loading with `loaders.splits.split_dataset`.

`export_corpora` (``push --local-dir``) writes the same layout into a local folder, to check before pushing::

    <folder>/README.md                                   dataset card: licences, citations, counts, schema
    <folder>/<corpus>/train-00000-of-00001.parquet       the prepared corpus, audio bytes embedded

Corpora whose licence forbids redistribution (SAVEE, ShEMO) are refused unless `allow_restricted` is set;
set it only if you hold the right to share them (e.g. a private repository for the licensees' own group).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
from datasets.table import embed_table_storage

from .registry import CORPORA, corpora_present, get_builder_class, validate_corpus_names
from .schema import SAMPLING_RATE

logger = logging.getLogger(__name__)

MAX_SHARD_BYTES = 500 * 10**6  # the Hub's usual Parquet shard size
SPLIT = "train"
WRITER_BATCH_SIZE = 100  # rows per Parquet row group: small groups keep audio datasets streamable
# The card's counts of every corpus pushed so far, hidden in its text: a later push of other corpora has only
# its own datasets at hand, yet rewrites the whole card.
SUMMARIES_COMMENT = re.compile(r"<!-- ser-corpora-summaries: (\{.*?\}) -->", re.DOTALL)


class RestrictedLicenseError(ValueError):
    """A corpus's licence forbids redistribution and the caller did not explicitly allow it."""


def push_corpora(
    data_root: str | os.PathLike,
    repo_id: str,
    corpora: Sequence[str] | None = None,
    *,
    private: bool = True,
    allow_restricted: bool = False,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> str:
    """Prepare `corpora` at 16 kHz and push them to the dataset repository `repo_id`; returns its URL.

    `corpora` defaults to every corpus found under `data_root` whose licence allows redistribution (and the
    restricted ones too with `allow_restricted`). Naming a restricted corpus without `allow_restricted`
    raises RestrictedLicenseError. An existing repository keeps its visibility (`private` applies only when
    it is created). Old shards of the pushed configs are replaced; other configs stay, in the card too.
    """
    from .loading import load_corpus

    names = choose_corpora(data_root, corpora, allow_restricted=allow_restricted)
    options = {"sampling_rate": SAMPLING_RATE, "cache_dir": cache_dir, "num_proc": num_proc}
    prepared = {name: load_corpus(name, data_root, **options) for name in names}
    return push_datasets(prepared, repo_id, private=private, allow_restricted=allow_restricted, token=token)


def push_datasets(
    prepared: Mapping[str, datasets.Dataset],
    repo_id: str,
    *,
    private: bool = True,
    allow_restricted: bool = False,
    token: str | None = None,
) -> str:
    """Push already prepared corpora (name -> Dataset in the common schema), one config each; returns the URL.

    `Dataset.push_to_hub` embeds the audio bytes, shards, and merges this config into the card's ``configs:``
    and ``dataset_info`` metadata; the card's text is then rewritten for every corpus pushed so far.
    """
    check_licences(list(prepared), allow_restricted=allow_restricted)
    commit = None
    for name, dataset in prepared.items():
        commit = dataset.push_to_hub(
            repo_id,
            config_name=name,
            split=SPLIT,
            private=private,
            token=token,
            max_shard_size=MAX_SHARD_BYTES,
            commit_message=f"Add corpus {name} (16 kHz, Parquet)",
        )
    if commit is None:
        raise ValueError(f"push to {repo_id}: no corpus given; name at least one")
    # push_to_hub resolves a bare name to the token owner's namespace: the card goes where the data went.
    repo_id = commit.repo_url.repo_id
    summaries = {name: summarize(name, dataset) for name, dataset in prepared.items()}
    update_card(repo_id, summaries, next(iter(prepared.values())).features, token=token)
    return str(commit.repo_url)


def update_card(
    repo_id: str, summaries: Mapping[str, dict], features: datasets.Features, *, token: str | None = None
) -> str:
    """Rewrite the README.md of `repo_id` for its corpora; returns the card written.

    The metadata push_to_hub wrote (``configs``, ``dataset_info``) is kept as is; licence, languages and the
    text are recomputed from `summaries` plus those of corpora pushed earlier (read back from the card).
    """
    from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi

    api = HfApi(token=token)
    card = DatasetCard.load(api.hf_hub_download(repo_id, "README.md", repo_type="dataset"))
    previous = SUMMARIES_COMMENT.search(card.text)
    merged = {**(json.loads(previous.group(1)) if previous else {}), **summaries}
    configs = [config["config_name"] for config in card.data.configs or []]
    # Card order follows the configs (push order); a config pushed by other means has no counts to show.
    ordered = {name: merged[name] for name in configs if name in merged and name in CORPORA}
    set_card_metadata(card.data, ordered)
    card.text = card_text(ordered, features)
    api.create_commit(
        repo_id,
        operations=[CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode())],
        commit_message=f"Dataset card: {', '.join(ordered)} (licences, citations, counts, schema)",
        repo_type="dataset",
    )
    return str(card)


def export_corpora(
    data_root: str | os.PathLike,
    folder: str | os.PathLike,
    corpora: Sequence[str] | None = None,
    *,
    allow_restricted: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> list[str]:
    """Write the Parquet shards and the dataset card of `corpora` into `folder`; returns the corpus names.

    Each corpus is loaded (prepared once, then read from the cache) with `loaders.loading.load_corpus`.
    """
    from .loading import load_corpus

    names = choose_corpora(data_root, corpora, allow_restricted=allow_restricted)
    prepared = {
        name: load_corpus(
            name, data_root, sampling_rate=SAMPLING_RATE, cache_dir=cache_dir, num_proc=num_proc
        )
        for name in names
    }
    export_datasets(prepared, folder, allow_restricted=allow_restricted)
    return names


def export_datasets(
    prepared: Mapping[str, datasets.Dataset], folder: str | os.PathLike, *, allow_restricted: bool = False
) -> Path:
    """Write already prepared corpora (name -> Dataset in the common schema) and their card into `folder`."""
    check_licences(list(prepared), allow_restricted=allow_restricted)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, dataset in prepared.items():
        write_parquet_shards(dataset, folder / name)
    summaries = {name: summarize(name, dataset) for name, dataset in prepared.items()}
    first = next(iter(prepared.values()))
    (folder / "README.md").write_text(dataset_card(summaries, first.features), encoding="utf-8")
    return folder


def choose_corpora(
    data_root: str | os.PathLike, corpora: Sequence[str] | None, *, allow_restricted: bool
) -> list[str]:
    """The corpora to push: the named ones (licences checked), or those found under `data_root`."""
    if corpora is not None:
        names = validate_corpus_names(list(corpora))
        check_licences(names, allow_restricted=allow_restricted)
        return names
    found = corpora_present(data_root)
    restricted = [n for n in found if not CORPORA[n].REDISTRIBUTABLE]
    if restricted and not allow_restricted:
        logger.warning(
            "not pushing %s: %s (name them and pass --allow-restricted-licenses if you may share them)",
            restricted,
            _licence_list(restricted),
        )
        found = [n for n in found if n not in restricted]
    if not found:
        raise FileNotFoundError(
            f"no corpus to push under {data_root}; download with `python -m loaders download`"
        )
    return found


def check_licences(names: Sequence[str], *, allow_restricted: bool) -> None:
    """Raise RestrictedLicenseError naming each corpus (and licence) that may not be redistributed."""
    restricted = [name for name in names if not get_builder_class(name).REDISTRIBUTABLE]
    if restricted and not allow_restricted:
        raise RestrictedLicenseError(
            f"the licence of {_licence_list(restricted)} forbids redistribution; leave them out, or pass "
            "allow_restricted=True (--allow-restricted-licenses) only if you hold the right to share them "
            "(e.g. a private repository for your own licensed group)"
        )


def _licence_list(names: Sequence[str]) -> str:
    return ", ".join(f"{name} ({get_builder_class(name).LICENSE})" for name in names)


def write_parquet_shards(
    dataset: datasets.Dataset, folder: Path, max_shard_bytes: int = MAX_SHARD_BYTES
) -> list[Path]:
    """Write `dataset` as ``train-XXXXX-of-NNNNN.parquet`` shards, audio bytes embedded (the Hub's layout).

    Audio stored by path (a native-rate load) is read into the file here, so the shards are self-contained.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{SPLIT}-*.parquet"):
        stale.unlink()
    num_shards = max(1, math.ceil(dataset._estimate_nbytes() / max_shard_bytes))
    paths = []
    for index in range(num_shards):
        shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
        shard = shard.with_format("arrow").map(
            embed_table_storage, batched=True, batch_size=WRITER_BATCH_SIZE, keep_in_memory=True
        )
        path = folder / f"{SPLIT}-{index:05d}-of-{num_shards:05d}.parquet"
        shard.with_format(None).to_parquet(str(path), batch_size=WRITER_BATCH_SIZE)
        paths.append(path)
    return paths


def summarize(name: str, dataset: datasets.Dataset) -> dict:
    """Counts for the card, from the metadata columns only (no audio is decoded)."""
    meta = dataset.select_columns(["emotion", "speaker", "gender", "duration"]).to_pandas()
    speakers = meta.drop_duplicates("speaker")
    return {
        "files": len(meta),
        "hours": float(meta["duration"].sum()) / 3600,
        "speakers": len(speakers),
        "female": int((speakers["gender"] == "female").sum()),
        "male": int((speakers["gender"] == "male").sum()),
        "emotions": {str(k): int(v) for k, v in meta["emotion"].value_counts().sort_index().items()},
    }


def dataset_card(summaries: Mapping[str, dict], features: datasets.Features) -> str:
    """README.md of an exported folder: Hub metadata (configs, licence, languages) and the body."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        configs=[
            {"config_name": name, "data_files": [{"split": SPLIT, "path": f"{name}/{SPLIT}-*.parquet"}]}
            for name in summaries
        ],
    )
    set_card_metadata(data, summaries)
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n{card_text(summaries, features)}"))


def set_card_metadata(data, summaries: Mapping[str, dict]) -> None:
    """Licence, languages and tags of the card's `data` (a DatasetCardData) for the corpora in `summaries`."""
    builders = [get_builder_class(name) for name in summaries]
    licences = sorted({b.LICENSE for b in builders})
    data.license = licences[0] if len(licences) == 1 and not licences[0].startswith("other") else "other"
    data.language = sorted({b.LANGUAGE for b in builders if b.LANGUAGE})
    data.task_categories = ["audio-classification"]
    data.tags = ["speech-emotion-recognition", "audio"]
    data.pretty_name = "Acted speech emotion corpora (16 kHz)"


def card_text(summaries: Mapping[str, dict], features: datasets.Features) -> str:
    """The card's body (below the metadata): usage, counts, schema, and each corpus's licence and citation."""
    builders = {name: get_builder_class(name) for name in summaries}
    lines = [
        "# Acted speech emotion corpora, 16 kHz",
        "",
        "Each corpus is one config with a single split `train` holding all of its files, resampled to "
        "16 kHz mono (16-bit PCM WAV bytes embedded in Parquet). Make speaker-independent splits after "
        "loading (the `speaker` column identifies speakers across corpora); random utterance splits put the "
        "same speaker in train and test and overstate accuracy.",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("<repo_id>", "{next(iter(summaries))}", split="{SPLIT}")',
        "```",
        "",
        "## Corpora",
        "",
        "| config | language | licence | files | hours | speakers (F/M) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summaries.items():
        b = builders[name]
        lines.append(
            f"| {name} | {b.LANGUAGE} | {b.LICENSE} | {s['files']} | {s['hours']:.2f} | "
            f"{s['speakers']} ({s['female']}/{s['male']}) |"
        )
    lines += ["", "## Files per emotion", ""]
    emotions = sorted({e for s in summaries.values() for e in s["emotions"]})
    lines += ["| emotion | " + " | ".join(summaries) + " |", "|---" * (len(summaries) + 1) + "|"]
    for emotion in emotions:
        counts = [str(s["emotions"].get(emotion, "")) for s in summaries.values()]
        lines.append(f"| {emotion} | " + " | ".join(counts) + " |")
    lines += ["", "## Schema", "", "| column | type |", "|---|---|"]
    lines += [f"| `{column}` | {_feature_text(feature)} |" for column, feature in features.items()]
    for name in summaries:
        b = builders[name]
        lines += ["", f"## {name}", ""]
        if b.DESCRIPTION:
            lines += [b.DESCRIPTION, ""]
        lines += [f"- Licence: {b.LICENSE}" + ("" if b.REDISTRIBUTABLE else " (redistribution restricted)")]
        if b.HOMEPAGE:
            lines.append(f"- Homepage: {b.HOMEPAGE}")
        if b.KAGGLE_SLUG:
            lines.append(f"- Source: https://www.kaggle.com/datasets/{b.KAGGLE_SLUG}")
        if b.CITATION:
            lines += ["", "```bibtex", b.CITATION.strip(), "```"]
    lines += ["", f"<!-- ser-corpora-summaries: {json.dumps(dict(summaries), sort_keys=True)} -->"]
    return "\n".join(lines) + "\n"


def _feature_text(feature) -> str:
    if isinstance(feature, datasets.Audio):
        return f"Audio(sampling_rate={feature.sampling_rate})"
    if isinstance(feature, datasets.ClassLabel):
        return f"ClassLabel({', '.join(feature.names)})"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    return type(feature).__name__


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``push DATA_ROOT --repo_id ID [--corpora ...] [--public] [--allow-restricted-licenses]``."""
    parser = subparsers.add_parser(
        "push",
        help="push prepared 16 kHz corpora to the Hugging Face Hub (Parquet, one config per corpus)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data_root", type=Path, help="folder with one subfolder per corpus")
    parser.add_argument(
        "--repo_id", help="dataset repository, e.g. user/ser-corpora (needed unless --local-dir)"
    )
    parser.add_argument("--corpora", nargs="+", metavar="NAME", help="default: every shareable corpus found")
    parser.add_argument(
        "--public", action="store_true", help="create the repository public (default: private)"
    )
    parser.add_argument(
        "--allow-restricted-licenses",
        dest="allow_restricted",
        action="store_true",
        help="also push corpora whose licence forbids redistribution (SAVEE, ShEMO), if you may share them",
    )
    parser.add_argument("--token", default=None, help="Hub token (default: the one saved by `hf auth login`)")
    parser.add_argument(
        "--cache_dir", type=Path, default=None, help="prepared-data cache (default: datasets')"
    )
    parser.add_argument("--num_proc", type=int, default=None, help="worker processes for preparing")
    parser.add_argument(
        "--local-dir",
        dest="local_dir",
        type=Path,
        default=None,
        help="only write the Parquet files and README.md into this folder, upload nothing (to check first)",
    )
    parser.set_defaults(func=_main)
    return parser


def _saved_token() -> str | None:
    """The token huggingface_hub would use: HF_TOKEN, or the one `hf auth login` saved."""
    import huggingface_hub

    return huggingface_hub.get_token()


def _main(args: argparse.Namespace) -> int:
    options = {
        "allow_restricted": args.allow_restricted,
        "cache_dir": args.cache_dir,
        "num_proc": args.num_proc,
    }
    if args.local_dir is not None:
        names = export_corpora(args.data_root, args.local_dir, args.corpora, **options)
        print(f"wrote {', '.join(names)} to {args.local_dir} (nothing uploaded)")
        return 0
    if not args.repo_id:
        raise ValueError(
            "push: give --repo_id (e.g. --repo_id user/ser-corpora), or --local-dir to only export"
        )
    # Preparing takes minutes and the upload is the last step: what would stop it is checked first.
    if args.corpora:
        check_licences(validate_corpus_names(args.corpora), allow_restricted=args.allow_restricted)
    if not (args.token or _saved_token()):
        raise ValueError(
            f"push --repo_id {args.repo_id}: no Hugging Face Hub token (none saved, HF_TOKEN not set); "
            "log in with `hf auth login` (older: `huggingface-cli login`), or set HF_TOKEN, or pass --token"
        )
    url = push_corpora(
        args.data_root, args.repo_id, args.corpora, private=not args.public, token=args.token, **options
    )
    print(f"pushed to {url}")
    return 0
