"""Identity of local weight folders: what the dataset fingerprint records for a model."""

from __future__ import annotations

from busforge.models.weights import folder_sha256


def test_folders_below_a_cache_directory_hash_their_own_files(tmp_path, monkeypatch):
    monkeypatch.setenv("BUSFORGE_CACHE_DIR", str(tmp_path / "hash-cache"))
    digests = []
    for name, payload in (("a", b"weights A"), ("b", b"weights B")):
        folder = tmp_path / ".cache" / "models" / name
        folder.mkdir(parents=True)
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(payload)
        (folder / "config.json").write_text("{}")
        (folder / ".cache").mkdir()  # huggingface_hub's download metadata inside a model folder
        (folder / ".cache" / "noise.json").write_text(name)
        digests.append(folder_sha256(folder))
    assert digests[0] != digests[1]
