"""Checkpoints: download (or import), verify, cache.

Layout: `<cache>/checkpoints/<model id>/<file name from the URL>`, plus the lock file
`<cache>/checkpoints.lock.json` (model id → {file, sha256, url, size}) that records the digest
of every accepted file (reading them is `repro.fetch.cache`). A file is accepted when, in this
order (what a file is comes before which digest it has):
  1. torch can read it (weights only) and its classifier and memory have the class count of the
     manifest row: this catches documented links that point to another model's file;
  2. for an imported file (`--from`), the model's own strict key and shape check passes (`fits`,
     on a meta-device model): another model's checkpoint of the same class count is refused;
  3. its sha256 equals the manifest's `sha256` (when the manifest has one), else the digest the
     lock recorded when it was first accepted (a different file later is an error unless `force`).
A rejected download is deleted and the next URL of the row is tried.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from repro.datasets.registry import dataset_of_class_count
from repro.errors import CheckpointError, FetchError, first_sentence
from repro.fetch.download import (
    AllUrlsFailed,
    DownloadFailed,
    DownloadResult,
    UrlFailed,
    copy_to_part,
    describe_attempts,
    describe_hosts,
    download_first_working,
    exclusive,
    file_name_from_url,
    human_size,
    make_progress,
    mirror_url,
    part_path_for,
    quiet,
    say,
    sha256_of,
)
from repro.fetch.cache import (  # noqa: F401 - the cache's readers, re-exported
    LOCK_FILE_NAME,
    _manifest_entry,
    checkpoint_path,
    lock_file_path,
    read_lock_file,
    resolve_checkpoint,
    verified_file,
)
from repro.paths import checkpoint_dir
from repro.text import short_digest

# (model id, checkpoint path) -> None, or CheckpointError naming what does not fit: the model's
# strict key and shape check, passed in by the caller (repro.models sits below repro.fetch).
FitCheck = Callable[[str, Path], None]

# Final classifier of the decoder: MCIBI `decoder_stage2.<i>.weight`, MCIBI++ `decoder_cls.conv2.weight`.
CLASSIFIER_PREFIXES = ("decoder_stage2.", "decoder_cls.")
MEMORY_KEY = "memory_module.memory"
WRAPPER_PREFIX = "module."


# ------------------------------------------------------------------------------ lock file


def _write_lock_record(model_id: str, record: dict | None) -> None:
    path = lock_file_path()
    with exclusive("lock-file", LOCK_FILE_NAME):
        data = read_lock_file()
        if record is None:
            data.pop(model_id, None)
        else:
            data[model_id] = record
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(path.name + f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n", encoding="utf-8")
        os.replace(temp, path)


# ------------------------------------------------------------------------ content checks


def _state_dict_of(obj) -> Mapping:
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        return obj["model"]
    if isinstance(obj, Mapping) and isinstance(obj.get("model_ema"), Mapping):
        raise CheckpointError("holds only 'model_ema' (moving-average weights), not the 'model' weights upstream "
                              "evaluates; usable only deliberately (repro.models.load_checkpoint(..., ema=True))")
    if isinstance(obj, Mapping):
        return obj
    raise CheckpointError("holds no state dict")


def checkpoint_class_count(path: Path) -> int:
    """The class count of an MCIBI / MCIBI++ checkpoint, read from its tensors' shapes.

    Both the memory (`memory_module.memory`, first dim = classes) and the decoder's final
    classifier (the last 4-D `.weight` under `decoder_stage2.` or `decoder_cls.`) must agree.
    Raises CheckpointError when the file is unreadable or not such a checkpoint.
    """
    import torch

    try:
        try:  # mmap: a 1.3 GB checkpoint is not read into memory just to look at two shapes
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err).lower():
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except Exception as err:  # torch raises many types for corrupt files
        text = str(err).strip()
        if "Unsupported global" in text:  # a pickle that needs code, not a corrupt file
            raise CheckpointError("holds objects other than tensors (refused by weights_only loading)") from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        first = detail.group(1) if detail else (text.splitlines()[0] if text else type(err).__name__)
        raise CheckpointError(f"is not a readable checkpoint (truncated or corrupt: {first_sentence(first)})") from None

    state_dict = _state_dict_of(obj)
    memory_classes = None
    classifier: tuple[str, int] | None = None
    for raw_key, value in state_dict.items():
        if not isinstance(raw_key, str) or not hasattr(value, "shape"):
            continue
        key = raw_key.removeprefix(WRAPPER_PREFIX)
        if key == MEMORY_KEY and len(value.shape) >= 1:
            memory_classes = int(value.shape[0])
        elif key.startswith(CLASSIFIER_PREFIXES) and key.endswith(".weight") and len(value.shape) == 4:
            classifier = (key, int(value.shape[0]))  # the last one in order is the classifier
    if memory_classes is None and classifier is None:
        raise CheckpointError(
            f"has neither {MEMORY_KEY} nor a decoder_stage2/decoder_cls classifier: "
            "not an MCIBI / MCIBI++ checkpoint"
        )
    if memory_classes is not None and classifier is not None and memory_classes != classifier[1]:
        raise CheckpointError(
            f"is inconsistent: {MEMORY_KEY} has {memory_classes} classes but {classifier[0]} has {classifier[1]}"
        )
    return memory_classes if memory_classes is not None else classifier[1]  # type: ignore[index]


def describe_class_count(count: int) -> str:
    dataset = dataset_of_class_count(count)
    return f"{count} classes ({dataset.title}?)" if dataset else f"{count} classes"



def _verify(result: DownloadResult, entry, *, force: bool, fits: FitCheck | None = None, imported: bool = False) -> None:
    """Raise UrlFailed when the downloaded/imported file is not the row's checkpoint.

    What the file is comes first (readable, class count, `fits`: the model's own strict key
    check), the sha256 question after: a wrong file is named for what it is, never only as
    "another digest" that --force would accept.
    """
    _verify_content(result.path, entry, fits)
    if entry.sha256:
        if result.sha256 != entry.sha256:
            raise UrlFailed(
                f"sha256 mismatch: expected {short_digest(entry.sha256)} (manifest), got {short_digest(result.sha256)}"
            )
    elif not force:
        recorded = read_lock_file().get(entry.id)
        if recorded and recorded.get("sha256") and recorded["sha256"] != result.sha256:
            raise UrlFailed(
                f"{'it fits the model, but its ' if imported else ''}sha256 {short_digest(result.sha256)} differs from "
                f"{short_digest(recorded['sha256'])} recorded in {LOCK_FILE_NAME} {_recorded_how(recorded)} "
                f"(use --force to accept the new file)"
            )


def _recorded_how(record: dict) -> str:
    url = str(record.get("url") or "")
    return f"when {url.removeprefix('file://')} was imported" if url.startswith("file://") else "on first download"


def _verify_content(path: Path, entry, fits: FitCheck | None) -> None:
    try:
        classes = checkpoint_class_count(path)
    except CheckpointError as err:  # "is not a readable checkpoint (...)", "holds ..."
        raise UrlFailed(f"it {err}") from None
    if classes != entry.num_classes:
        known = dataset_of_class_count(entry.num_classes)
        expected = known.title if known else entry.dataset
        raise UrlFailed(
            f"wrong model: it has {describe_class_count(classes)}, "
            f"this {expected} row needs {entry.num_classes}"
        )
    if fits is not None:
        try:
            fits(entry.id, path)
        except CheckpointError as err:  # "<path> does not fit model <id>: <why>"
            raise UrlFailed(f"its weights do not fit model {entry.id}: " + str(err).split(": ", 1)[-1]) from None


# ----------------------------------------------------------------------------------- API


def _record_download(entry, path: Path, result: DownloadResult, url: str) -> None:
    _write_lock_record(
        entry.id, {"file": path.name, "sha256": result.sha256, "url": url, "size": result.size}
    )


def _drop_other_files(folder: Path, keep: Path) -> None:
    """Remove an older accepted file of the same row (a --force refetch under another name)."""
    for other in folder.iterdir():
        if other != keep and other.is_file() and not other.name.endswith(".part"):
            other.unlink(missing_ok=True)


def _adopt_unrecorded(entry, force: bool) -> Path | None:
    """A complete file from an earlier run whose lock record was lost: verify and record it."""
    folder = checkpoint_dir(entry.id)
    for url in entry.weights:
        candidate = folder / file_name_from_url(url)
        if not candidate.is_file():
            continue
        result = DownloadResult(candidate, sha256_of(candidate), candidate.stat().st_size, url)
        try:
            _verify(result, entry, force=force)
        except UrlFailed as failure:
            say(f"{entry.id}: discarding cached {candidate.name} ({failure.reason})", always=True)
            candidate.unlink(missing_ok=True)
            continue
        _record_download(entry, candidate, result, url)
        return candidate
    return None


def fetch_checkpoint(
    model_id: str,
    *,
    force: bool = False,
    source: str | os.PathLike | None = None,
    mirror: str | None = None,
    progress: bool = True,
    link: bool = False,
    fits: FitCheck | None = None,
) -> Path:
    """Make the checkpoint of `model_id` (id or alias) available in the cache; return its path.

    `source`: a local file (or an http(s) URL) to import instead of the manifest's URLs; it is
    verified exactly like a download; `link`: put a symbolic link to the local file in the cache
    instead of a copy (same checks). `mirror` (or $REPRO_MIRROR) replaces the
    `https://github.com/` base of GitHub release URLs. `force` re-downloads a cached file and
    accepts a digest different from the one recorded in the lock file (never one different from
    the manifest's sha256). `fits(model_id, path)`: the model's strict key check, run on an
    imported file before it is accepted (the CLI passes one). When every URL fails: prints the
    URLs to download by hand and the `--from` command that imports the file, whole on lines of
    their own, then raises FetchError (one short line: each host and what went wrong).
    """
    entry = _manifest_entry(model_id)
    reporter = make_progress(progress)
    is_url = source is not None and re.match(r"^https?://", str(source)) is not None
    if link and (source is None or is_url):
        raise FetchError("--link needs --from with a local checkpoint file", exit_code=2)

    with quiet(not progress), exclusive(entry.id, f"checkpoint {entry.id}"):
        cached = _already_in_cache(entry) if source is None and not force else None
        if cached is not None:
            return cached
        if source is not None and not is_url:
            local = _local_file(entry, Path(source).expanduser())
            if link:
                return _link_file(entry, local, force=force, fits=fits)
            return _import_file(entry, local, force=force, reporter=reporter, fits=fits)
        return _download(entry, source, mirror, force=force, reporter=reporter)


def _download(entry, source: str | os.PathLike | None, mirror: str | None, *, force: bool, reporter) -> Path:
    """Try the URLs in order (an explicit one, else the manifest's); keep and record the first that
    verifies. All failing: one line per URL and the import command, then one FetchError line
    with the reason (each reason once, with the hosts it hit)."""
    folder = checkpoint_dir(entry.id)
    urls, names = _urls_to_try(entry, source, mirror)
    say(f"{entry.id}: fetching checkpoint")
    try:
        path, result, attempts = download_first_working(
            urls,
            lambda url: folder / names[url],
            lambda result: _verify(result, entry, force=force),
            what=f"checkpoint {entry.id}",
            progress=reporter,
        )
    except AllUrlsFailed as err:
        _remove_if_empty(folder)
        if source is None:  # the URLs and the import command whole, on lines of their own
            _say_manual_download(entry)
            raise DownloadFailed(f"could not download the checkpoint of {entry.id}: {describe_hosts(err.attempts)}") from None
        raise
    except FetchError:
        _remove_if_empty(folder)
        raise
    _record_download(entry, path, result, result.url)
    _drop_other_files(folder, path)
    if attempts:  # an earlier URL failed: said once, now that another one worked
        say(f"{entry.id}: failed {describe_attempts(attempts)}; downloaded {result.url}", always=True)
    say(f"{entry.id}: {path} ({human_size(result.size)}, sha256 {result.sha256})")
    return path


def _already_in_cache(entry) -> Path | None:
    """The verified cached file, or a file already in the cache folder that verifies (adopted)."""
    cached = verified_file(entry, rehash=True)
    if cached is not None:
        say(f"{entry.id}: cached and verified ({cached})")
        return cached
    adopted = _adopt_unrecorded(entry, False)
    if adopted is not None:
        say(f"{entry.id}: verified the file already in the cache ({adopted})")
    return adopted


def _urls_to_try(entry, source: str | os.PathLike | None, mirror: str | None) -> tuple[list[str], dict[str, str]]:
    """The URLs to try in order (an explicit URL, else the manifest's, mirrored) and the file
    name each one saves as."""
    if source is not None:
        return [str(source)], {str(source): file_name_from_url(str(source))}
    if not entry.weights:
        raise FetchError(f"{entry.id} has no published checkpoint link; if you have the file, run "
                         f"`repro fetch {entry.id} --from FILE`")
    urls = [mirror_url(url, mirror) for url in entry.weights]
    return urls, {m: file_name_from_url(u) for m, u in zip(urls, entry.weights)}


def _from_line(entry) -> str:
    return f"repro fetch {entry.id} --from FILE"


def _say_manual_download(entry) -> None:
    """The URLs to download by hand, whole and one per line, and the command that imports the file
    (as a dataset's manual steps end: `then: repro fetch ... --from FILE`)."""
    lines = [f"{entry.id}: download the checkpoint by hand from" + (" one of:" if len(entry.weights) > 1 else ":")]
    lines += [f"  {url}" for url in entry.weights]
    lines += [f"then: {_from_line(entry)}"]
    say("\n".join(lines), always=True)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _local_file(entry, source: Path) -> Path:
    """The checkpoint file given with --from; a folder or a missing path is one line saying what to do."""
    if source.is_dir():
        raise FetchError(
            f"--from {source} is a folder; a checkpoint is one .pth file: `repro fetch {entry.id} --from FILE.pth` "
            f"(an unpacked dataset folder is registered with `repro fetch --dataset NAME --from {source}`)",
            exit_code=2,
        )
    if not source.is_file():
        raise FetchError(f"--from {source}: no such file")
    return source


def _import_file(entry, source: Path, *, force: bool, reporter, fits: FitCheck | None = None) -> Path:
    folder = checkpoint_dir(entry.id)
    dest = folder / source.name.removesuffix(".part")
    part = part_path_for(dest)
    try:
        result = copy_to_part(source, part, progress=reporter)
        _verify(result, entry, force=force, fits=fits, imported=True)
    except UrlFailed as failure:
        part.unlink(missing_ok=True)
        _remove_if_empty(folder)
        raise FetchError(f"{source} was not imported as the checkpoint of {entry.id}: {failure.reason}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        _remove_if_empty(folder)
        raise
    os.replace(part, dest)
    result.path = dest
    _record_download(entry, dest, result, source.resolve().as_uri())
    _drop_other_files(folder, dest)
    say(f"{entry.id}: imported {source} → {dest} (sha256 {result.sha256})")
    return dest


def _same_file(dest: Path, source: Path, digest: str) -> bool:
    """`dest` is `source` itself (or a link to it), or a file with the same content."""
    if dest.resolve() == source:
        return True
    return dest.is_file() and sha256_of(dest) == digest


def _link_file(entry, source: Path, *, force: bool, fits: FitCheck | None = None) -> Path:
    """Verify a local checkpoint in place and put a symbolic link to it in the cache (no copy)."""
    source = source.resolve()
    result = DownloadResult(source, sha256_of(source), source.stat().st_size, source.as_uri())
    try:
        _verify(result, entry, force=force, fits=fits, imported=True)
    except UrlFailed as failure:
        raise FetchError(f"{source} was not imported as the checkpoint of {entry.id}: {failure.reason}") from None
    folder = checkpoint_dir(entry.id)
    dest = folder / source.name
    if (dest.exists() or dest.is_symlink()) and not force and not _same_file(dest, source, result.sha256):
        raise FetchError(f"{dest} already holds a different file; pass --force to replace it by a link to {source}")
    folder.mkdir(parents=True, exist_ok=True)
    if dest.resolve() != source:  # else `dest` is (a link to) `source`: a link would point at itself
        temp = part_path_for(dest)
        temp.unlink(missing_ok=True)
        temp.symlink_to(source)
        os.replace(temp, dest)  # atomic: the old file or link until the new link is in place
    _record_download(entry, dest, result, source.as_uri())
    _drop_other_files(folder, dest)
    say(f"{entry.id}: linked {dest} → {source} (sha256 {result.sha256})")
    return dest


# --------------------------------------------------------------------------------- pinning


def pin_manifest(out: str | os.PathLike, manifest_path: str | os.PathLike | None = None) -> dict[str, str]:
    """Write a copy of the manifest with `sha256` filled in from the lock file; return id → digest.

    The copy is edited line by line so that comments and layout survive; it is re-validated,
    and every pinned digest is checked in the result.
    """
    from repro.manifest import DEFAULT_PATH, load_manifest, parse_manifest

    source = Path(manifest_path or os.environ.get("REPRO_MANIFEST") or DEFAULT_PATH)
    manifest = load_manifest(source)
    text = source.read_text(encoding="utf-8")
    known = {e.id: e.sha256 for e in manifest.entries}
    pins: dict[str, str] = {}
    for model_id, record in read_lock_file().items():
        digest = record.get("sha256")
        if model_id not in known or not digest:
            continue
        if known[model_id] and known[model_id] != digest:
            raise FetchError(
                f"{model_id}: the lock file's sha256 {short_digest(digest)} differs from the manifest's "
                f"{short_digest(known[model_id])}; re-fetch it before pinning"
            )
        pins[model_id] = digest
        text = _set_sha256(text, model_id, digest)

    pinned = parse_manifest(text, source=str(out))
    for entry in pinned.entries:
        if entry.id in pins and entry.sha256 != pins[entry.id]:
            raise FetchError(f"could not pin {entry.id} in {source}: unexpected manifest layout")
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temp = out_path.with_name(out_path.name + ".tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, out_path)
    return {**{k: v for k, v in known.items() if v}, **pins}


def _set_sha256(text: str, model_id: str, digest: str) -> str:
    """Set `sha256:` in the YAML block of list item `- id: <model_id>` (added if absent)."""
    lines = text.splitlines(keepends=True)
    start_re = re.compile(rf"^(\s*)- id:\s*['\"]?{re.escape(model_id)}['\"]?\s*(#.*)?$")
    for index, line in enumerate(lines):
        match = start_re.match(line.rstrip("\n"))
        if not match:
            continue
        indent = match.group(1) + "  "
        end = index + 1
        while end < len(lines):
            stripped = lines[end].rstrip("\n")
            if stripped.strip() and not stripped.startswith(indent) and not stripped.lstrip().startswith("#"):
                break
            end += 1
        for inner in range(index + 1, end):
            if re.match(rf"^{indent}sha256:", lines[inner]):
                lines[inner] = f"{indent}sha256: {digest}\n"
                return "".join(lines)
        insert_at = end
        while insert_at > index + 1 and not lines[insert_at - 1].strip():
            insert_at -= 1
        lines.insert(insert_at, f"{indent}sha256: {digest}\n")
        return "".join(lines)
    raise FetchError(f"could not find the entry '{model_id}' in the manifest text to pin it")
