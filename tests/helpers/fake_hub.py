"""A stand-in for the Hugging Face Hub: HfApi.create_repo / upload_folder patched where the engine calls them, the
errors huggingface_hub itself raises, and a check that a token never leaks into texts or files."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import CommitInfo, RepoUrl
from huggingface_hub.utils import hf_raise_for_status

SECRET = "hf_SECRETtoken123"


def http_error(status: int, message: str = "", headers: dict[str, str] | None = None) -> HfHubHTTPError:
    """The error huggingface_hub itself raises for such an answer."""
    request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
    response = httpx2.Response(status, request=request, json={"error": message}, headers=headers or {})
    try:
        hf_raise_for_status(response)
    except HfHubHTTPError as err:
        return err
    raise AssertionError(f"HTTP {status} did not raise")


class FakeHub:
    """Stands in for HfApi.create_repo / upload_folder; keeps a copy of what was uploaded, fails on request."""

    def __init__(self, tmp_path: Path, owner: str = "alice") -> None:
        self.owner = owner
        self.uploaded = tmp_path / "uploaded"
        self.create_calls: list[dict] = []
        self.upload_calls: list[dict] = []
        self.tokens: list[str | None] = []
        self.library_names: list[str | None] = []
        self.create_failures: list[BaseException] = []
        self.upload_failures: list[BaseException] = []

    def install(self, monkeypatch) -> FakeHub:
        fake = self

        def create_repo(api, repo_id, **kwargs):
            fake.tokens.append(api.token)
            fake.library_names.append(api.library_name)
            fake.create_calls.append({"repo_id": repo_id, **kwargs})
            if fake.create_failures:
                raise fake.create_failures.pop(0)
            full = repo_id if "/" in repo_id else f"{fake.owner}/{repo_id}"
            return RepoUrl(f"https://huggingface.co/{_kind(kwargs)}{full}")

        def upload_folder(api, *, repo_id, folder_path, **kwargs):
            fake.tokens.append(api.token)
            fake.upload_calls.append({"repo_id": repo_id, "folder_path": folder_path, **kwargs})
            if fake.upload_failures:
                raise fake.upload_failures.pop(0)
            shutil.rmtree(fake.uploaded, ignore_errors=True)
            shutil.copytree(folder_path, fake.uploaded)
            return CommitInfo(
                commit_url=f"https://huggingface.co/{_kind(kwargs)}{repo_id}/commit/abc123",
                commit_message=kwargs.get("commit_message") or "",
                commit_description="",
                oid="abc123",
            )

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
        return self


def _kind(call: dict) -> str:
    """The URL prefix of the repo's kind: models have none."""
    return "datasets/" if call.get("repo_type") == "dataset" else ""


def leaked(token: str, *texts: str, folders: tuple[Path, ...] = ()) -> list[str]:
    """Where ``token`` shows up: among the given texts and in every file under ``folders``."""
    found = [f"text #{i}" for i, text in enumerate(texts) if token in text]
    for folder in folders:
        found += [str(p) for p in folder.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    return found
