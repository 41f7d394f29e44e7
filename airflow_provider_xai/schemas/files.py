"""Wire models of xAI's Files API (``/v1/files``): tolerant of fields xAI adds later.

A file is uploaded as a multipart form (``expires_after`` before ``file``), listed a page at a
time (``pagination_token``), downloaded (``/content``) and shared by a public URL.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: xAI refuses larger uploads with 413 (the Files API reference; other pages say 48 MB).
MAX_FILE_BYTES = 50_000_000
#: ``expires_after`` bounds, in seconds (an hour to 30 days); no expiry when left out.
MIN_EXPIRES_AFTER = 3600
MAX_EXPIRES_AFTER = 2_592_000
#: Most files one list call returns.
MAX_PAGE_SIZE = 100


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class FileObject(_Model):
    """A file as xAI describes it (upload, get and list answers)."""

    id: str = Field(min_length=1)
    object: str = "file"
    #: The size in bytes, as xAI says it (``bytes`` on the wire).
    size: int | None = Field(default=None, alias="bytes")
    created_at: int | None = None
    expires_at: int | None = None
    filename: str = ""
    purpose: str = ""
    public_url: str | None = None
    public_url_expires_at: int | None = None


class FileList(_Model):
    """One page of ``GET /v1/files``: a page shorter than the limit is the last one."""

    data: list[FileObject] = Field(default_factory=list)
    pagination_token: str | None = None


class DeletedFile(_Model):
    id: str = ""
    deleted: bool = False
    object: str = "file"


class PublicURL(_Model):
    """A file's public URL (no credentials needed to read it) and when it stops working."""

    public_url: str = Field(min_length=1)
    expires_at: int | None = None


class RevokedURL(_Model):
    id: str = ""
    revoked: bool = False
    public_url: str | None = None


__all__ = [
    "MAX_EXPIRES_AFTER",
    "MAX_FILE_BYTES",
    "MAX_PAGE_SIZE",
    "MIN_EXPIRES_AFTER",
    "DeletedFile",
    "FileList",
    "FileObject",
    "PublicURL",
    "RevokedURL",
]
