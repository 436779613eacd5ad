"""Discovery and the six file-name grammars: every real file name, every quirk, every bad input."""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest

from loaders import fixtures
from loaders.discovery import CorpusNotFoundError, GitLfsPointerError, UnknownCodeError, strip_wrappers
from loaders.registry import (
    CORPORA,
    CORPUS_NAMES,
    corpora_present,
    find_corpus_dir,
    get_builder_class,
    locate_corpora,
    resolve_corpus_dir,
    scan_corpus,
)

MANIFEST = fixtures.read_manifest()


def test_every_manifest_name_parses_to_its_emotion_speaker_and_gender():
    for row in MANIFEST:
        info = CORPORA[row["corpus"]].parse_file(row["path"])
        assert info is not None, row["path"]
        assert (info.emotion, info.speaker, info.gender) == (row["emotion"], row["speaker"], row["gender"])


def test_utterances_are_unique_within_each_corpus():
    for name in CORPUS_NAMES:
        rows = [r for r in MANIFEST if r["corpus"] == name]
        utterances = {CORPORA[name].parse_file(r["path"]).utterance for r in rows}
        assert len(utterances) == len(rows) == CORPORA[name].EXPECTED_FILES


def test_corpus_metadata():
    for name in CORPUS_NAMES:
        builder_class = CORPORA[name]
        assert builder_class.NAME == name
        assert builder_class.LANGUAGE in {"en", "de", "fa"}
        assert builder_class.KAGGLE_SLUG and builder_class.HOMEPAGE and builder_class.CITATION
        assert builder_class.REDISTRIBUTABLE == (name not in {"savee", "shemo"})


@pytest.mark.parametrize(
    "corpus, relpath, expected",
    [
        ("cremad", "AudioWAV/1040_ITH_SAD_X.wav", ("sadness", "1040", "male", "")),
        ("cremad", "AudioWAV/1076_MTI_SAD_XX.wav", ("sadness", "1076", "female", "")),
        ("cremad", "AudioWAV/1001_DFA_ANG_HI.wav", ("anger", "1001", "male", "high")),
        (
            "tess",
            "TESS Toronto emotional speech set data/OAF_neutral/OA_bite_neutral.wav",
            ("neutral", "OAF", "female", ""),
        ),
        # The folder says Fear / pleasant_surprised; the emotion comes from the file name.
        (
            "tess",
            "TESS Toronto emotional speech set data/YAF_pleasant_surprised/YAF_back_ps.wav",
            ("surprise", "YAF", "female", ""),
        ),
        ("savee", "AudioData/DC/sa01.wav", ("sadness", "DC", "male", "")),
        ("savee", "AudioData/DC/su15.wav", ("surprise", "DC", "male", "")),
        ("savee", "AudioData/DC/a01.wav", ("anger", "DC", "male", "")),
        ("savee", "ALL/JK_sa03.wav", ("sadness", "JK", "male", "")),
        ("shemo", "female/F01F02.wav", ("fear", "F01", "female", "")),  # F at 1: female, at 4: fear
        ("shemo", "male/M12A01.wav", ("anger", "M12", "male", "")),
        ("ravdess", "Actor_02/03-01-06-02-01-02-02.wav", ("fear", "02", "female", "strong")),
        ("emodb", "wav/03a01Wa.wav", ("anger", "03", "male", "")),
        ("emodb", "wav/08a01Ab.wav", ("anxiety", "08", "female", "")),
    ],
)
def test_quirky_names(corpus, relpath, expected):
    info = CORPORA[corpus].parse_file(relpath)
    assert (info.emotion, info.speaker, info.gender, info.intensity) == expected


def test_old_one_letter_level_is_the_same_utterance_as_xx():
    cremad = CORPORA["cremad"]
    assert (
        cremad.parse_file("a/1040_ITH_SAD_X.wav").utterance
        == cremad.parse_file("b/1040_ITH_SAD_XX.wav").utterance
    )


def test_savee_nested_and_flat_forms_are_one_utterance():
    savee = CORPORA["savee"]
    forms = ["AudioData/DC/a01.wav", "AudioData/AudioData/DC/a01.wav", "ALL/DC_a01.wav"]
    assert len({savee.parse_file(p).utterance for p in forms}) == 1


@pytest.mark.parametrize(
    "corpus, relpath",
    [
        ("cremad", "AudioWAV/1001_DFA_XYZ_XX.wav"),
        ("cremad", "AudioWAV/1099_DFA_ANG_XX.wav"),
        ("emodb", "wav/03a01Qa.wav"),
        ("emodb", "wav/04a01Wa.wav"),
        ("ravdess", "Actor_01/03-01-09-01-01-01-01.wav"),
        ("ravdess", "Actor_01/03-02-01-01-01-01-01.wav"),  # song, not speech
        ("savee", "AudioData/DC/x01.wav"),
        ("savee", "AudioData/ZZ/a01.wav"),
        ("savee", "AudioData/DC/a16.wav"),
        ("shemo", "female/F01Q01.wav"),
        ("shemo", "female/X01A01.wav"),
        ("tess", "TESS/OAF_Fear/OAF_back_scared.wav"),
    ],
)
def test_unknown_code_names_the_file(corpus, relpath):
    with pytest.raises(UnknownCodeError, match=relpath.rsplit("/", 1)[-1]):
        CORPORA[corpus].parse_file(relpath)


@pytest.mark.parametrize("corpus", CORPUS_NAMES)
def test_names_outside_the_grammar_are_not_parsed(corpus):
    assert CORPORA[corpus].parse_file("stray/recording.wav") is None


@pytest.mark.parametrize("corpus", CORPUS_NAMES)
def test_scan_of_a_download_keeps_each_recording_once_and_skips_clutter(tmp_path, corpus):
    corpus_dir = fixtures.build_download(corpus, tmp_path, per_emotion=4)
    scan = scan_corpus(corpus, corpus_dir)
    expected = fixtures._first_per_emotion(
        sorted((r for r in MANIFEST if r["corpus"] == corpus), key=lambda r: r["path"]), 4
    )
    assert [f.file for f in scan.files] == sorted(r["path"] for r in expected)
    assert Counter(f.info.emotion for f in scan.files) == Counter(r["emotion"] for r in expected)
    copies = {"ravdess": 1, "tess": 1, "savee": 1}.get(corpus, 0)  # savee: nested AudioData/AudioData
    assert scan.duplicates == copies * len(expected)
    reasons = Counter(reason for _, reason in scan.skipped)
    assert reasons["macOS metadata (__MACOSX/)"] == 2
    assert reasons["macOS AppleDouble metadata (._*)"] == 1
    assert reasons["OS metadata (.DS_Store)"] == 2
    assert reasons["not audio (readme, licence or other file)"] == 2
    assert reasons["empty folder"] == 1
    assert all(os.path.isfile(f.path) for f in scan.files)


def test_extra_download_levels_are_stripped_from_the_file_identity(tmp_path):
    corpus_dir = fixtures.build_download(
        "emodb", tmp_path, per_emotion=2, extra_levels="berlin-database-of-emotional-speech-emodb/versions/1"
    )
    scan = scan_corpus("emodb", corpus_dir)
    assert len(scan.files) == 14
    assert all(f.file.startswith("wav/") for f in scan.files)
    assert (
        strip_wrappers("emodb/versions/1/wav/03a01Wa.wav", frozenset({"emodb", "versions"}))
        == "wav/03a01Wa.wav"
    )


def test_savee_flat_form(tmp_path):
    corpus_dir = fixtures.build_download("savee", tmp_path, per_emotion=3, savee_flat=True, quirks=False)
    scan = scan_corpus("savee", corpus_dir)
    assert len(scan.files) == 21 and scan.duplicates == 0
    assert all(f.file.startswith("ALL/") and f.info.speaker in {"DC", "JE", "JK", "KL"} for f in scan.files)


def test_savee_flat_and_folder_forms_together_count_once(tmp_path):
    fixtures.build_download("savee", tmp_path, per_emotion=3, quirks=False)
    fixtures.build_download("savee", tmp_path, per_emotion=3, quirks=False, savee_flat=True)
    scan = scan_corpus("savee", tmp_path / "savee")
    assert len(scan.files) == 21 and scan.duplicates == 21


def test_tess_trees_merged_as_on_a_case_insensitive_file_system(tmp_path):
    # macOS merges `tess toronto ...` and `TESS Toronto ...`: the nested copy lands inside the first tree.
    corpus_dir = fixtures.build_download("tess", tmp_path, per_emotion=2, quirks=False)
    lower = corpus_dir / "tess toronto emotional speech set data"
    shutil.move(
        lower / "TESS Toronto emotional speech set data",
        corpus_dir / "TESS Toronto emotional speech set data" / "TESS Toronto emotional speech set data",
    )
    lower.rmdir()
    scan = scan_corpus("tess", corpus_dir)
    assert len(scan.files) == 14 and scan.duplicates == 14


def test_order_does_not_depend_on_creation_order(tmp_path):
    rows = [r for r in MANIFEST if r["corpus"] == "emodb"][:30]
    a = fixtures.build_download("emodb", tmp_path / "a", manifest=rows, quirks=False)
    b = fixtures.build_download("emodb", tmp_path / "b", manifest=list(reversed(rows)), quirks=False)
    for path in sorted((b / "wav").iterdir(), reverse=True):  # rewrite in another order
        path.write_bytes(path.read_bytes())
    files_a = [f.file for f in scan_corpus("emodb", a).files]
    assert files_a == [f.file for f in scan_corpus("emodb", b).files] == sorted(files_a)


def test_git_lfs_pointer_is_always_an_error(tmp_path):
    corpus_dir = fixtures.build_download("cremad", tmp_path, per_emotion=2, quirks=False)
    stub = corpus_dir / "AudioWAV" / "1001_DFA_ANG_XX.wav"
    stub.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 44524\n")
    for lenient in (False, True):
        with pytest.raises(GitLfsPointerError, match="git lfs pull"):
            scan_corpus("cremad", corpus_dir, lenient=lenient)


def test_unknown_code_is_an_error_or_skipped_and_reported_when_lenient(tmp_path):
    corpus_dir = fixtures.build_download("emodb", tmp_path, per_emotion=2, quirks=False)
    shutil.copy(corpus_dir / "wav" / "03a01Wa.wav", corpus_dir / "wav" / "03a01Qa.wav")
    with pytest.raises(UnknownCodeError, match="03a01Qa.wav"):
        scan_corpus("emodb", corpus_dir)
    scan = scan_corpus("emodb", corpus_dir, lenient=True)
    assert len(scan.files) == 14
    assert [path for path, reason in scan.skipped if reason.startswith("unknown code")] == ["wav/03a01Qa.wav"]


def test_stray_wav_outside_the_grammar_is_skipped_with_a_reason(tmp_path):
    corpus_dir = fixtures.build_download("emodb", tmp_path, per_emotion=1, quirks=False)
    shutil.copy(corpus_dir / "wav" / "03a01Wa.wav", corpus_dir / "wav" / "test.wav")
    scan = scan_corpus("emodb", corpus_dir)
    assert ("wav/test.wav", "name does not fit the emodb file-name grammar") in scan.skipped


def test_missing_corpus_folder_says_how_to_download(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="python -m loaders download .* --corpora ravdess"):
        find_corpus_dir(tmp_path, "ravdess")
    with pytest.raises(CorpusNotFoundError, match="--corpora ravdess"):
        scan_corpus("ravdess", tmp_path / "ravdess")


def test_original_project_folder_named_after_the_kaggle_slug_is_found(tmp_path):
    (tmp_path / "ravdess-emotional-speech-audio").mkdir()
    found = find_corpus_dir(tmp_path, "ravdess")
    assert found == tmp_path / "ravdess-emotional-speech-audio"


def test_a_full_folder_wins_over_an_empty_one(tmp_path):
    """An empty `<root>/emodb` left by a failed download does not hide the original project's full folder."""
    (tmp_path / "emodb").mkdir()
    full = tmp_path / "berlin-database-of-emotional-speech-emodb"
    (full / "wav").mkdir(parents=True)
    assert find_corpus_dir(tmp_path, "emodb") == full
    (tmp_path / "tess").mkdir()
    assert find_corpus_dir(tmp_path, "tess") == tmp_path / "tess"  # named: found, the scan says it is empty


def test_corpora_present_lists_non_empty_folders_under_either_name_in_table_order(tmp_path):
    for folder in ("tess", "ravdess-emotional-speech-audio", "emodb", "savee"):
        (tmp_path / folder).mkdir()
        if folder != "savee":
            (tmp_path / folder / "x").touch()
    (tmp_path / "synthetic").mkdir()  # generated: never "present" as a download
    (tmp_path / "synthetic" / "x").touch()
    assert corpora_present(tmp_path) == ["emodb", "ravdess", "tess"]
    found, missing = locate_corpora(tmp_path)
    assert found == {name: find_corpus_dir(tmp_path, name) for name in ("emodb", "ravdess", "tess")}
    assert set(missing) == {"cremad", "savee", "shemo"}
    assert "savee" in missing["savee"] and "is empty" in missing["savee"]
    assert "--corpora cremad" in missing["cremad"]
    assert corpora_present(tmp_path / "nosuch") == []
    with pytest.raises(ValueError, match="valid corpora"):
        corpora_present(tmp_path, ["emodb", "iemocap"])


def test_a_corpus_folder_is_taken_as_it_is_and_a_data_root_searched(tmp_path):
    corpus_dir = fixtures.build_download("emodb", tmp_path, per_emotion=1, quirks=False)
    # A download tool may repeat the corpus folder inside itself: the folder given is the corpus folder.
    (corpus_dir / "emodb").mkdir()
    assert resolve_corpus_dir("emodb", corpus_dir) == str(corpus_dir)
    assert resolve_corpus_dir("emodb", tmp_path) == str(corpus_dir)
    elsewhere = tmp_path / "my copy"
    shutil.copytree(corpus_dir / "wav", elsewhere / "wav")
    assert resolve_corpus_dir("emodb", elsewhere) == str(elsewhere)
    with pytest.raises(CorpusNotFoundError, match="--corpora emodb"):
        resolve_corpus_dir("emodb", tmp_path / "nosuch")


def test_unknown_corpus_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid corpora: cremad, emodb"):
        get_builder_class("iemocap")
