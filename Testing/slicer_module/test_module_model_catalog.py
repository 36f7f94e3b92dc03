"""Model catalogue: downloads from a local HTTP server on 127.0.0.1 only (no network)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading

import pytest
from DualDINOv3SegmentLib.ModelCatalog import CATALOG_FILE, ModelCatalog

from DualDINOv3Lib.errors import CheckpointError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, several read chunks


class Server:
    """Serves ``/good``, ``/truncated`` (headers promise more bytes than sent, then the connection drops)."""

    def __init__(self):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                if self.path == "/truncated":
                    self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(PAYLOAD)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def catalog(tmp_path, server, path="/good", sha=None):
    entry = {
        "id": "remote",
        "title": "Remote model",
        "url": server.url + path,
        "sha256": sha or hashlib.sha256(PAYLOAD).hexdigest(),
        "size": len(PAYLOAD),
    }
    file = tmp_path / "Models.json"
    file.write_text(json.dumps({"catalogVersion": 1, "models": [entry]}))
    return ModelCatalog(str(file), cacheDirectory=str(tmp_path / "cache"), timeout=10)


def test_good_file_is_cached_and_reused(tmp_path, server):
    models = catalog(tmp_path, server)
    reports = []
    path = models.modelPath("remote", progress=lambda f, m: reports.append(f))
    with open(path, "rb") as f:
        assert f.read() == PAYLOAD
    assert reports[-1] == 1.0 and len(reports) > 1
    assert models.modelPath("remote") == path
    assert server.requests == ["/good"]  # the second call used the cache
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["remote.safetensors"]


def test_wrong_checksum_is_rejected_and_nothing_cached(tmp_path, server):
    models = catalog(tmp_path, server, sha="0" * 64)
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        models.modelPath("remote")
    assert list((tmp_path / "cache").iterdir()) == []


def test_interrupted_download_leaves_no_partial_file(tmp_path, server):
    models = catalog(tmp_path, server, path="/truncated")
    with pytest.raises(CheckpointError, match="remote"):
        models.modelPath("remote")
    assert list((tmp_path / "cache").iterdir()) == []
    assert not models.isAvailable("remote")


def test_damaged_cached_file_is_downloaded_again(tmp_path, server):
    models = catalog(tmp_path, server)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "remote.safetensors").write_bytes(b"x" * len(PAYLOAD))
    path = models.modelPath("remote")
    with open(path, "rb") as f:
        assert f.read() == PAYLOAD
    assert server.requests == ["/good"]


def test_the_shipped_catalogue_has_the_bundled_demo_model_marked_not_for_patients(tmp_path):
    models = ModelCatalog(CATALOG_FILE, cacheDirectory=str(tmp_path))
    demo = models.entries["demo_dual_p8"]
    assert demo.bundled and not demo.patientData
    assert "NOT for patient data" in demo.description
    assert models.modelPath("demo_dual_p8") is None  # the library loads its bundled model itself
    assert list(tmp_path.iterdir()) == []


def test_the_logic_resolves_a_catalogue_id_through_the_verified_cache(tmp_path, server):
    from DualDINOv3SegmentLib import DualDINOv3SegmentLogic

    models = catalog(tmp_path, server)
    logic = DualDINOv3SegmentLogic(scene=object(), catalog=models)
    path = logic.resolveModel("remote")
    assert path == models.cachedPath("remote") and server.requests == ["/good"]
    assert logic.resolveModel(path) == path  # a file path is used as it is
    assert logic.resolveModel(None) is None  # the bundled model
