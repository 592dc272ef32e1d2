"""`--download`: fetch official SeedVR2 files with huggingface_hub and accept them only if their SHA-256 is
right.

The expected digest is pinned where we know it (the text embeddings, FACTS.md section 1; checked against
the copies in the reference data) and otherwise the SHA-256 the Hub itself reports for the file's LFS
object (its `X-Linked-Etag`), read before the download and bound to the same commit. A file is fetched
into a staging folder inside the target folder, hashed there, and only then renamed to its final name, so
a corrupt or partial download never sits under the name the loader looks for. `HF_ENDPOINT` (read by
huggingface_hub) points the whole path at a mirror, or at a local test server.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

from .errors import CheckpointError

log = logging.getLogger(__name__)

PINNED_SHA256 = {
    "pos_emb.pt": "fa07a14844314772266b66c3b95deb0027696d8fe7065721263db5176f45d799",
    "neg_emb.pt": "6a43e5800ef2354f1c156d27535834da055cbec8248298b8923492bba2076581",
}
STAGING = ".seedvr2-download"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
CHUNK = 8 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 8 MiB chunks (constant memory for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError("--download needs the huggingface_hub package: pip install huggingface_hub") from None
    return huggingface_hub


def _network_errors(hub) -> tuple[type[BaseException], ...]:
    """The exception types a failed Hub request raises (HTTP client errors differ between hub versions)."""
    errors: list[type[BaseException]] = [OSError, ValueError, hub.utils.HfHubHTTPError]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def expected_sha256(filename: str, hub_etag: str | None, where: str) -> str:
    """The digest a download of `filename` must have: the pin, else the Hub's LFS SHA-256."""
    reported = hub_etag.lower() if hub_etag and SHA256_HEX.fullmatch(hub_etag.lower()) else None
    pinned = PINNED_SHA256.get(filename)
    if pinned and reported and reported != pinned:
        raise CheckpointError(
            f"{where} now has SHA-256 {reported}, not the known release's {pinned}: refusing it. "
            "Get the file by hand if the change is intended."
        )
    if pinned or reported:
        return pinned or reported  # type: ignore[return-value]
    raise CheckpointError(
        f"{where}: the server reports no SHA-256 for this file (etag {hub_etag!r}), so it cannot be verified; "
        "download it by hand from the Hugging Face page instead."
    )


def download_file(repo_id: str, filename: str, folder: Path, endpoint: str | None = None) -> Path:
    """Fetch `filename` from Hub repository `repo_id` into `folder`, verified; returns its final path."""
    hub = _hub()
    where = f"{repo_id}/{filename}"
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / STAGING
    try:
        meta = hub.get_hf_file_metadata(hub.hf_hub_url(repo_id, filename, endpoint=endpoint))
        expected = expected_sha256(filename, meta.etag, where)
        log.info("downloading %s (%s bytes) into %s", where, meta.size, folder)
        staged = Path(hub.hf_hub_download(repo_id, filename, revision=meta.commit_hash, local_dir=staging,
                                          endpoint=endpoint))
    except _network_errors(hub) as e:
        shutil.rmtree(staging, ignore_errors=True)
        reason = " ".join(str(e).split())  # the hub's messages span lines; ours is one
        raise CheckpointError(f"downloading {where} failed: {type(e).__name__}: {reason} Check the connection "
                              "(and HF_ENDPOINT if set) and run again.") from None
    actual = sha256_file(staged)
    if actual != expected:
        shutil.rmtree(staging, ignore_errors=True)
        raise CheckpointError(
            f"downloaded {where} has SHA-256 {actual}, expected {expected}: the file was refused and deleted. "
            "Run again; if it keeps failing, the mirror or the connection alters the file."
        )
    final = folder / filename
    os.replace(staged, final)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("verified %s (sha256 %s)", final, actual)
    return final
