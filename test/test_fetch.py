"""metrabs_ros.fetch against a local HTTP server on 127.0.0.1 (nothing else is contacted)."""
import importlib.util
import io
import json
import random
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from metrabs_ros import fetch
from metrabs_ros.fetch import FetchError, fetch_model, load_registry, resolve_model
from metrabs_ros.model import Metrabs
from metrabs_ros.weights import OFFICIAL_FILES, CheckpointError, load_model

PARITY_DIR = Path(__file__).resolve().parents[2] / 'shared' / 'official_parity'
OFFICIAL_NAME = 'metrabs_eff2l_384px_800k_28ds_pytorch'
NAME = 'test_model'
FAKE_FILES = {name: random.Random(i).randbytes(100_000) for i, name in enumerate(OFFICIAL_FILES)}


class Server:
    """Files by URL path; `ranges`: honour Range requests; `drops`: how many more responses to cut
    off half-way through the body."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.drops = 0
        self.requests: list[tuple[str, str | None]] = []
        self.url = ''

    def serve(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url + path


def make_handler(server: Server):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requested = self.headers.get('Range')
            server.requests.append((self.path, requested))
            data = server.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = int(re.fullmatch(r'bytes=(\d+)-', requested)[1]) if requested and server.ranges else 0
            if start >= len(data) > 0:
                self.send_error(416)
                return
            self.send_response(206 if requested and server.ranges else 200)
            if requested and server.ranges:
                self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
            body = data[start:]
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            if server.drops:
                server.drops -= 1
                body = body[:len(body) // 2]  # then the connection closes: a short body
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def server():
    state = Server()
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), make_handler(state))
    state.url = f'http://127.0.0.1:{httpd.server_address[1]}'
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache in tmp_path, a user registry file named by the environment, no proxies."""
    for variable in ('http_proxy', 'https_proxy', 'all_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY'):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv('no_proxy', '*')
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / 'cache'))
    monkeypatch.setenv(fetch.REGISTRY_ENV, str(tmp_path / 'user_registry.json'))
    (tmp_path / 'user_registry.json').write_text('{}')
    monkeypatch.setattr(fetch, 'RETRY_WAIT_S', 0.0)
    monkeypatch.setattr(fetch, 'TIMEOUT_S', 10.0)
    return tmp_path / 'cache'


def register(cache: Path, name: str, url: str, **extra):
    """Add `name` to the registry file that $METRABS_ROS_REGISTRY names."""
    path = cache.parent / 'user_registry.json'
    table = json.loads(path.read_text())
    table[name] = {'url': url, 'format': 'tar.gz', **extra}
    path.write_text(json.dumps(table))


def tarball(files: dict[str, bytes], folder: str | None = 'release',
            extra: tuple[tarfile.TarInfo, ...] = ()) -> bytes:
    """A .tar.gz of `files` (inside `folder`, or at the top level) plus the members `extra`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz', compresslevel=1) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f'{folder}/{name}' if folder else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buffer.getvalue()


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.mark.parametrize('folder', ['release', None])
def test_download_unpacks_checks_and_records_checksums(cache, server, folder):
    register(cache, NAME, server.serve('/m.tar.gz', tarball(FAKE_FILES, folder)))
    path = fetch_model(NAME, allow_download=True, progress=False)
    assert path == cache / NAME
    assert {name: (path / name).read_bytes() for name in OFFICIAL_FILES} == FAKE_FILES
    manifest = json.loads((path / fetch.MANIFEST_FILE).read_text())
    assert set(manifest['files']) == set(OFFICIAL_FILES) and len(manifest['archive_sha256']) == 64
    assert leftovers(cache) == [NAME]  # no partial download, no staging folder
    assert fetch_model(NAME) == path and len(server.requests) == 1  # cached: no second request


def test_nothing_is_downloaded_without_permission(cache, server):
    register(cache, NAME, server.serve('/m.tar.gz', tarball(FAKE_FILES)))
    with pytest.raises(FetchError, match=f'not downloaded yet.*metrabs-fetch {NAME} --allow-download'):
        fetch_model(NAME)
    with pytest.raises(CheckpointError, match=f'metrabs-fetch {NAME} --allow-download'):
        load_model(NAME)
    assert server.requests == [] and leftovers(cache) == []
    assert fetch.main([NAME]) == 2


def test_interrupted_download_resumes_with_a_range_request(cache, server):
    archive = tarball(FAKE_FILES)
    register(cache, NAME, server.serve('/m.tar.gz', archive))
    server.drops = 1
    path = fetch_model(NAME, allow_download=True, progress=False)
    assert (path / 'ckpt.pt').read_bytes() == FAKE_FILES['ckpt.pt']
    assert server.requests == [('/m.tar.gz', None), ('/m.tar.gz', f'bytes={len(archive) // 2}-')]


def test_server_without_range_support_restarts_cleanly(cache, server):
    register(cache, NAME, server.serve('/m.tar.gz', tarball(FAKE_FILES)))
    server.ranges, server.drops = False, 1
    path = fetch_model(NAME, allow_download=True, progress=False)
    assert {name: (path / name).read_bytes() for name in OFFICIAL_FILES} == FAKE_FILES
    assert len(server.requests) == 2 and server.requests[1][1] is not None  # asked, got the whole file


def test_partial_file_of_an_earlier_run_is_resumed(cache, server):
    archive = tarball(FAKE_FILES)
    register(cache, NAME, server.serve('/m.tar.gz', archive))
    cache.mkdir()
    (cache / f'{NAME}.tar.gz.part').write_bytes(archive[:1000])
    fetch_model(NAME, allow_download=True, progress=False)
    assert server.requests == [('/m.tar.gz', 'bytes=1000-')]
    assert leftovers(cache) == [NAME]


def test_retries_are_bounded_and_keep_the_partial_file(cache, server):
    register(cache, NAME, server.serve('/m.tar.gz', tarball(FAKE_FILES)))
    server.drops = 100
    with pytest.raises(FetchError, match=rf'{fetch.MAX_ATTEMPTS} attempts.*closed after.*resumes it'):
        fetch_model(NAME, allow_download=True, progress=False)
    assert len(server.requests) == fetch.MAX_ATTEMPTS
    assert leftovers(cache) == [f'{NAME}.tar.gz.part']
    server.drops = 0
    fetch_model(NAME, allow_download=True, progress=False)
    assert server.requests[-1][1] is not None and leftovers(cache) == [NAME]


def test_missing_file_on_the_server_is_not_retried(cache, server):
    register(cache, NAME, server.url + '/nowhere.tar.gz')
    with pytest.raises(FetchError, match='HTTP 404'):
        fetch_model(NAME, allow_download=True, progress=False)
    assert len(server.requests) == 1


def test_corrupt_archive_is_reported_and_removed(cache, server):
    register(cache, NAME, server.serve('/m.tar.gz', tarball(FAKE_FILES)[:-5000] + b'\0' * 100))
    with pytest.raises(FetchError, match='not a valid .tar.gz'):
        fetch_model(NAME, allow_download=True, progress=False)
    assert leftovers(cache) == []


def test_archive_without_ckpt_is_not_a_release(cache, server):
    files = {name: data for name, data in FAKE_FILES.items() if name != 'ckpt.pt'}
    register(cache, NAME, server.serve('/m.tar.gz', tarball(files)))
    with pytest.raises(FetchError, match='not a complete model release.*missing ckpt.pt'):
        fetch_model(NAME, allow_download=True, progress=False)
    assert leftovers(cache) == []


def test_archive_with_two_folders_is_not_a_release(cache, server):
    archive = tarball({**{f'a/{n}': d for n, d in FAKE_FILES.items()}, 'b/readme': b'x'}, folder=None)
    register(cache, NAME, server.serve('/m.tar.gz', archive))
    with pytest.raises(FetchError, match='top level or inside one folder.*holds neither'):
        fetch_model(NAME, allow_download=True, progress=False)


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = '') -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize('unsafe', [
    member('/tmp/evil'), member('release/../../evil'),
    member('release/link', tarfile.SYMTYPE, '../../etc/passwd'),
    member('release/abs_link', tarfile.SYMTYPE, '/etc/passwd'),
    member('release/hard', tarfile.LNKTYPE, '../outside'),
    member('release/fifo', tarfile.FIFOTYPE)], ids=lambda m: m.name)
def test_unsafe_archive_members_are_refused(cache, server, tmp_path, unsafe):
    register(cache, NAME, server.serve('/m.tar.gz', tarball(FAKE_FILES, extra=(unsafe,))))
    with pytest.raises(FetchError, match='unsafe archive'):
        fetch_model(NAME, allow_download=True, progress=False)
    assert leftovers(cache) == [] and not (tmp_path / 'evil').exists()


def test_links_inside_the_release_are_kept(cache, server):
    link = member('release/alias.pt', tarfile.SYMTYPE, 'ckpt.pt')
    register(cache, NAME, server.serve('/m.tar.gz', tarball(FAKE_FILES, extra=(link,))))
    path = fetch_model(NAME, allow_download=True, progress=False)
    assert (path / 'alias.pt').read_bytes() == FAKE_FILES['ckpt.pt']


def test_registry_checksum_mismatch_is_refused(cache, server):
    register(cache, NAME, server.serve('/m.tar.gz', tarball(FAKE_FILES)), sha256='0' * 64)
    with pytest.raises(FetchError, match='SHA-256.*registry expects 0000'):
        fetch_model(NAME, allow_download=True, progress=False)
    assert leftovers(cache) == []


def test_modified_cache_is_detected_and_refetched_with_force(cache, server):
    register(cache, NAME, server.serve('/m.tar.gz', tarball(FAKE_FILES)))
    path = fetch_model(NAME, allow_download=True, progress=False)
    (path / 'ckpt.pt').write_bytes(b'tampered')
    (path / 'config.yaml').unlink()
    expected = (r'does not match the checksums.*ckpt\.pt \(changed\).*config\.yaml \(missing\).*'
                f'metrabs-fetch {NAME} --allow-download --cache {cache} --force')
    with pytest.raises(FetchError, match=expected):
        fetch_model(NAME)
    with pytest.raises(FetchError, match=expected):
        fetch_model(NAME, allow_download=True)  # a download must be asked for with force
    assert fetch.main([NAME, '--allow-download', '--force']) == 0
    assert (path / 'ckpt.pt').read_bytes() == FAKE_FILES['ckpt.pt'] and fetch_model(NAME) == path
    assert leftovers(cache) == [NAME]


def test_unverifiable_cache_folder_is_reported(cache):
    (cache / OFFICIAL_NAME).mkdir(parents=True)
    with pytest.raises(FetchError, match=f'unreadable {fetch.MANIFEST_FILE}.*--force'):
        fetch_model(OFFICIAL_NAME)


def test_registry_built_in_and_user_extensions(cache, monkeypatch, tmp_path):
    assert load_registry()[OFFICIAL_NAME] == {
        'url': 'https://bit.ly/metrabs_l_pt', 'format': 'tar.gz',
        'description': load_registry()[OFFICIAL_NAME]['description']}
    cache.mkdir()
    (cache / 'registry.json').write_text(json.dumps({
        'mine': {'url': 'http://127.0.0.1:9/a.tar.gz'}, 'both': {'url': 'http://127.0.0.1:9/cache'}}))
    register(cache, 'both', 'http://127.0.0.1:9/env')
    registry = load_registry()
    assert {OFFICIAL_NAME, 'mine', 'both'} <= set(registry)
    assert registry['both']['url'] == 'http://127.0.0.1:9/env'  # $METRABS_ROS_REGISTRY wins
    monkeypatch.delenv(fetch.REGISTRY_ENV)
    assert load_registry()['both']['url'] == 'http://127.0.0.1:9/cache'


@pytest.mark.parametrize('table, message', [
    ('[1, 2]', 'expected'), ('{"a b": {"url": "http://x"}}', 'not a valid model name'),
    ('{"m": {"url": "ftp://x"}}', 'expected'), ('{"m": {"url": "http://x", "format": "zip"}}', 'zip'),
    ('{"m": ', 'cannot read')])
def test_bad_user_registry_is_named(cache, tmp_path, table, message):
    (tmp_path / 'user_registry.json').write_text(table)
    with pytest.raises(FetchError, match=message):
        load_registry()


def test_names_and_paths(cache, tmp_path):
    (tmp_path / OFFICIAL_NAME).mkdir()
    assert resolve_model(tmp_path / OFFICIAL_NAME) == tmp_path / OFFICIAL_NAME  # a path wins
    with pytest.raises(FetchError, match=f'not found.*nor is it a registered model name.*{OFFICIAL_NAME}'):
        resolve_model('no_such_model')
    with pytest.raises(FetchError, match=f'not downloaded yet.*metrabs-fetch {OFFICIAL_NAME} --allow-download'
                                         f" --cache '?{cache}"):
        load_model(OFFICIAL_NAME)
    with pytest.raises(FetchError, match='unknown model name'):
        fetch_model('no_such_model')


def test_cli_lists_and_prints_the_directory(cache, server, capsys):
    register(cache, NAME, server.serve('/m.tar.gz', tarball(FAKE_FILES)))
    assert fetch.main(['--list']) == 0
    listing = capsys.readouterr().out
    assert OFFICIAL_NAME in listing and 'https://bit.ly/metrabs_l_pt' in listing and NAME in listing
    assert fetch.main([NAME]) == 2
    assert f'metrabs-fetch {NAME} --allow-download' in capsys.readouterr().err
    other = cache.parent / 'other_cache'
    assert fetch.main([NAME, '--allow-download', '--cache', str(other)]) == 0
    assert capsys.readouterr().out.strip() == str(other / NAME)


@pytest.mark.skipif(not (PARITY_DIR / 'make_ckpt.py').exists(),
                    reason=f'official-format parity fixture not found at {PARITY_DIR}')
def test_official_release_download_then_load_model(cache, server, tmp_path):
    spec = importlib.util.spec_from_file_location('make_ckpt', PARITY_DIR / 'make_ckpt.py')
    make_ckpt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_ckpt)
    release = make_ckpt.make_release(tmp_path / 'release_s')
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz', compresslevel=1) as tar:
        tar.add(release, arcname='metrabs_s_test_pytorch')
    register(cache, 'metrabs_s_test', server.serve('/s.tar.gz', buffer.getvalue()))
    server.drops = 1
    model = load_model('metrabs_s_test', allow_download=True)
    assert isinstance(model, Metrabs) and model.config.backbone == 'efficientnet_v2_s'
    assert len(server.requests) == 2 and server.requests[1][1] is not None
    assert load_model('metrabs_s_test').config == model.config and len(server.requests) == 2
