"""metrabs-fetch: resolve registered model names to verified local model directories.

A registered model is a name with the URL of a .tar.gz holding one model directory: an official
MeTRAbs PyTorch release (ckpt.pt, config.yaml, joint_info.npz, skeleton_infos.pkl,
joint_transform_matrix.npy) or a metrabs_ros checkpoint (config.json, model.safetensors), its files
at the top level of the archive or inside one folder.

Registry: the built-in table (metrabs_ros/model_registry.json), extended or overridden by
CACHE/registry.json and then by the JSON file that $METRABS_ROS_REGISTRY names, all of the form
    {"NAME": {"url": "https://... (or file://...)", "format": "tar.gz",
              "sha256": "optional SHA-256 of the archive"}}

Cache (CACHE): --cache, else $METRABS_ROS_CACHE, else ~/.cache/metrabs_ros/models. A model is
unpacked into CACHE/NAME/ with a manifest (metrabs_ros_manifest.json) of the SHA-256 of the archive
and of every file, recorded at download and checked whenever the cached model is used. Nothing is
downloaded unless asked (--allow-download; allow_download=True in Python); an interrupted download
stays in CACHE/NAME.tar.gz.part and the next download resumes it.

    metrabs-fetch --list
    metrabs-fetch NAME --allow-download    # download if needed, verify, print the model directory
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import os
import posixpath
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from metrabs_ros.weights import CheckpointError, model_files

CACHE_ENV = 'METRABS_ROS_CACHE'
REGISTRY_ENV = 'METRABS_ROS_REGISTRY'
DEFAULT_CACHE = Path('~/.cache/metrabs_ros/models').expanduser()
BUILTIN_REGISTRY = Path(__file__).resolve().parent / 'model_registry.json'
USER_REGISTRY_FILE = 'registry.json'
MANIFEST_FILE = 'metrabs_ros_manifest.json'
FORMATS = ('tar.gz',)
URL_SCHEMES = ('http://', 'https://', 'file://')
MAX_ATTEMPTS = 5
RETRY_WAIT_S = 2.0  # times the attempt number
TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20
_RETRYABLE_HTTP = {408, 429, 500, 502, 503, 504}
_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._+-]*')


class FetchError(CheckpointError):
    """A model name cannot be resolved, downloaded, unpacked or verified."""


def cache_dir(cache: str | Path | None = None) -> Path:
    """`cache`, else $METRABS_ROS_CACHE, else ~/.cache/metrabs_ros/models."""
    return Path(cache or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def load_registry(cache: str | Path | None = None) -> dict[str, dict]:
    """Name -> {url, format, ...}: built-in, updated by CACHE/registry.json, then $METRABS_ROS_REGISTRY."""
    registry = _read_registry(BUILTIN_REGISTRY)
    user_file = cache_dir(cache) / USER_REGISTRY_FILE
    if user_file.is_file():
        registry.update(_read_registry(user_file))
    if os.environ.get(REGISTRY_ENV):
        registry.update(_read_registry(Path(os.environ[REGISTRY_ENV]).expanduser()))
    return registry


def resolve_model(model: str | Path, allow_download: bool = False,
                  cache: str | Path | None = None) -> Path:
    """The directory for a model path or registered name; an existing path wins over a name.

    A name gives its verified cached copy, downloaded first only when `allow_download` is set.
    """
    path = Path(model).expanduser()
    if path.exists():
        return path
    registry = load_registry(cache)
    if str(model) in registry:
        return fetch_model(str(model), allow_download, cache)
    raise FetchError(f'model directory not found: {path} (nor is it a registered model name: '
                     f'{", ".join(sorted(registry))}; see metrabs-fetch --list)')


def fetch_model(name: str, allow_download: bool = False, cache: str | Path | None = None,
                force: bool = False, progress: bool = True) -> Path:
    """The verified cached directory of registered model `name`.

    Downloads it (progress bar on stderr unless `progress` is False) only when `allow_download` is
    set and it is not cached, or also when cached with `force`. Raises FetchError naming the command
    that fetches it when it is not cached, and when the cached copy fails its checksums.
    """
    registry = load_registry(cache)
    if name not in registry:
        raise FetchError(f'unknown model name {name!r}; registered: {", ".join(sorted(registry))} '
                         f'(add yours to {cache_dir(cache) / USER_REGISTRY_FILE} or to the file '
                         f'${REGISTRY_ENV} names)')
    target = cache_dir(cache) / name
    command = fetch_command(name, cache)
    if target.exists() and not (force and allow_download):
        verify_cached(target, refetch=f'{command} --force')
        return target
    if not allow_download:
        raise FetchError(f'model {name!r} is not downloaded yet (cache: {cache_dir(cache)}); '
                         f'fetch it with: {command}   (or allow downloads: allow_download=True)')
    _install(name, registry[name], cache_dir(cache), progress)
    return target


def fetch_command(name: str, cache: str | Path | None = None) -> str:
    """The shell command that downloads `name` into this cache."""
    root = cache_dir(cache)
    cache_option = '' if root == DEFAULT_CACHE else f' --cache {shlex.quote(str(root))}'
    return f'metrabs-fetch {shlex.quote(name)} --allow-download{cache_option}'


def verify_cached(directory: Path, refetch: str) -> None:
    """Check every file against the manifest written at download; FetchError says to run `refetch`."""
    try:
        files = json.loads((directory / MANIFEST_FILE).read_text())['files']
        problems = [f'{rel} (missing)' if not (directory / rel).is_file() else f'{rel} (changed)'
                    for rel, digest in files.items()
                    if not (directory / rel).is_file() or _sha256(directory / rel) != digest]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise FetchError(f'{directory}: unreadable {MANIFEST_FILE} ({type(e).__name__}: {e}), so this '
                         f'is not a complete download; fetch it again with: {refetch}') from e
    if problems:
        raise FetchError(f'cached model {directory} does not match the checksums recorded at download: '
                         f'{", ".join(problems)}; fetch it again with: {refetch}')


def _read_registry(path: Path) -> dict[str, dict]:
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FetchError(f'cannot read the model registry {path}: {e}') from e
    if not isinstance(table, dict):
        raise FetchError(f'{path}: expected {{"NAME": {{"url": ..., "format": "tar.gz"}}, ...}}')
    for name, entry in table.items():
        if not _NAME.fullmatch(name):
            raise FetchError(f'{path}: {name!r} is not a valid model name (letters, digits, . _ + -)')
        if not isinstance(entry, dict) or not str(entry.get('url')).startswith(URL_SCHEMES):
            raise FetchError(f'{path}: {name}: expected {{"url": "https://...", "format": "tar.gz"}}')
        if entry.get('format', FORMATS[0]) not in FORMATS:
            raise FetchError(f'{path}: {name}: unsupported format {entry["format"]!r}, '
                             f'expected {" or ".join(FORMATS)}')
    return table


def _install(name: str, entry: dict, root: Path, progress: bool):
    """Download, unpack into a staging folder inside `root`, verify, then rename into root/name."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f'{name}.tar.gz.part'
    _download(entry['url'], archive, progress, name)
    staging = Path(tempfile.mkdtemp(prefix=f'.{name}.', dir=root))
    try:
        digest = _sha256(archive)
        if entry.get('sha256') and digest != entry['sha256'].lower():
            raise FetchError(f'the download from {entry["url"]} has SHA-256 {digest}, '
                             f'the registry expects {entry["sha256"]}')
        release = _unpack(archive, staging, entry['url'])
        files = {str(p.relative_to(release)): _sha256(p) for p in sorted(release.rglob('*')) if p.is_file()}
        manifest = {'name': name, 'url': entry['url'], 'archive_sha256': digest, 'files': files}
        (release / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        _replace_dir(release, root / name)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


def _download(url: str, part: Path, progress: bool, label: str):
    """Download `url` into `part`, continuing what it holds where the server allows; bounded retries."""
    error: Exception | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if error is not None:
            if progress:
                print(f'metrabs-fetch: {error}; retrying ({attempt}/{MAX_ATTEMPTS})', file=sys.stderr)
            time.sleep(RETRY_WAIT_S * (attempt - 1))
        start = part.stat().st_size if part.exists() else 0
        headers = {'User-Agent': 'metrabs_ros-fetch', **({'Range': f'bytes={start}-'} if start else {})}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                        timeout=TIMEOUT_S) as response:
                _receive(response, part, start, progress, label)
            return
        except urllib.error.HTTPError as e:
            if e.code == 416:  # the partial file does not fit the server's file: start over
                part.unlink(missing_ok=True)
            elif e.code not in _RETRYABLE_HTTP:
                raise FetchError(f'cannot download {url}: HTTP {e.code} {e.reason}') from e
            error = e
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            error = e
    raise FetchError(f'cannot download {url} ({MAX_ATTEMPTS} attempts, last: {error}); '
                     f'the partial download {part} is kept and the next download resumes it')


def _receive(response, part: Path, start: int, progress: bool, label: str):
    """Write the body to `part`: appended for a 206 continuing at `start`, else from the beginning."""
    resumed = bool(start) and response.status == 206
    if resumed:
        content_range = response.headers.get('Content-Range', '')
        match = re.fullmatch(r'bytes (\d+)-\d+/(\d+|\*)', content_range)
        if not match or int(match[1]) != start:
            part.unlink()
            raise ConnectionError(f'unexpected Content-Range {content_range!r}, starting over')
        total = None if match[2] == '*' else int(match[2])
    else:
        start, length = 0, response.headers.get('Content-Length', '')
        total = int(length) if length.isdigit() else None
    with open(part, 'ab' if resumed else 'wb') as f, \
            tqdm(total=total, initial=start, unit='B', unit_scale=True, unit_divisor=1024, desc=label,
                 file=sys.stderr, disable=not progress) as bar:
        while chunk := response.read(CHUNK_BYTES):
            f.write(chunk)
            bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise ConnectionError(f'connection closed after {size} of {total} bytes')


def _unpack(archive: Path, staging: Path, url: str) -> Path:
    """Extract `archive` into `staging` after checking every member; returns the model directory."""
    try:
        with tarfile.open(archive, 'r:gz') as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, url)
            tar.extractall(staging, members=members, filter='data')
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise FetchError(f'the download from {url} is not a valid .tar.gz archive '
                         f'({type(e).__name__}: {e})') from e
    entries = list(staging.iterdir())
    release = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
    try:
        model_files(release)
    except CheckpointError as e:
        raise FetchError(f'the archive from {url} is not a complete model release '
                         f'(files at its top level or inside one folder): '
                         f'{str(e).replace(str(staging), "<archive>")}') from e
    return release


def _check_member(member: tarfile.TarInfo, url: str):
    """Refuse absolute paths, '..', links that leave the archive's folder, and special files."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or '..' in name.parts:
        raise FetchError(f'unsafe archive from {url}: {member.name!r} points outside its folder')
    if member.issym() or member.islnk():
        base = name.parent if member.issym() else PurePosixPath()  # hard links: from the archive root
        target = posixpath.normpath(str(base / member.linkname))
        if PurePosixPath(member.linkname).is_absolute() or target == '..' or target.startswith('../'):
            raise FetchError(f'unsafe archive from {url}: link {member.name!r} -> {member.linkname!r} '
                             f'points outside its folder')
    elif not (member.isfile() or member.isdir()):
        raise FetchError(f'unsafe archive from {url}: {member.name!r} is not a file, folder or link')


def _replace_dir(source: Path, target: Path):
    """Rename `source` to `target`; an existing `target` is renamed aside first, then removed."""
    old = target.with_name(f'.{target.name}.old-{os.getpid()}')
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='metrabs-fetch', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('name', nargs='?', help='registered model name (see --list)')
    parser.add_argument('--allow-download', action='store_true',
                        help='download the model when it is not in the cache')
    parser.add_argument('--force', action='store_true',
                        help='with --allow-download: download again even when cached '
                             '(replaces a corrupted or modified copy)')
    parser.add_argument('--cache', type=Path,
                        help=f'cache directory (default: ${CACHE_ENV}, else {DEFAULT_CACHE})')
    parser.add_argument('--list', action='store_true',
                        help='list the registered models and whether they are downloaded')
    args = parser.parse_args(argv)
    if not (args.list or args.name):
        parser.error('give a model NAME or --list')
    if args.force and not args.allow_download:
        parser.error('--force needs --allow-download')
    try:
        if args.list:
            for name, entry in sorted(load_registry(args.cache).items()):
                target = cache_dir(args.cache) / name
                state = f'downloaded: {target}' if target.exists() else 'not downloaded'
                print(f'{name}\n    {entry["url"]}\n    {state}')
        else:
            print(fetch_model(args.name, args.allow_download, args.cache, force=args.force))
    except CheckpointError as e:
        print(f'metrabs-fetch: error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
