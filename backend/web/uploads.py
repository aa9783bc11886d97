"""Image uploads: streamed, limited, decoded for real, stored under server-made ids.

The multipart body is parsed as it arrives, so an oversized file or an image whose header declares
too many pixels is refused before the rest of the body is read. A request is all or nothing: when
any file is refused, every file it wrote is removed and the error names the file and the reason.
A body that ends before its closing boundary (`--boundary--`) was cut off: it is refused whole.

Files in progress live in `.incoming` beside (not inside) the served uploads folder, and a stored
image enters `uploads/` by a rename only after its row exists, so a crash (kill -9) can leave
nothing half-written where it is served; `recover_incoming` tidies up at start-up.
Decoding and re-encoding run in a small thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import os
import re
import secrets
import shutil
import unicodedata
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from python_multipart.multipart import MultipartParser, parse_options_header

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.utils.config import Settings
from backend.utils.files import upload_name, upload_path
from backend.utils.images import normalize_upload
from backend.utils.storage import is_disk_full

log = logging.getLogger(__name__)

ALLOWED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "MPO": "JPEG"}
HEADER_PROBE_BYTES = 64 * 1024
# Form fields that are not files are tiny; anything larger is not a form from our page.
MAX_FIELD_BYTES = 64 * 1024
# Our page sends none; a few are tolerated, an endless stream of them is not a form.
MAX_TEXT_FIELDS = 16
STORED_NAME = re.compile(r"^[0-9a-f]{24}\.png$")
# Signatures of the accepted formats, to tell "not an image we take" from "one of ours, damaged".
_SIGNATURES = (
    ("PNG", lambda b: b.startswith(b"\x89PNG\r\n\x1a\n")),
    ("JPEG", lambda b: b.startswith(b"\xff\xd8\xff")),
    ("WebP", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"),
)

_pools: dict[int, ThreadPoolExecutor] = {}


def image_pool(workers: int) -> ThreadPoolExecutor:
    """One shared pool per size: uploads are bounded in number, so its queue is too."""
    pool = _pools.get(workers)
    if pool is None:
        pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="upload-image")
    return pool


def _sniff(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    return next((name for name, match in _SIGNATURES if match(head)), None)


class UploadError(StudioError):
    """An upload refused: what was wrong with it, as a catalogue code (the status is the web's)."""


@dataclass
class StoredUpload:
    id: str
    filename: str
    width: int
    height: int
    bytes: int


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    temp: Path | None = None
    handle: io.BufferedWriter | None = None
    size: int = 0
    probed: bool = False
    header_fields: list[tuple[bytes, bytes]] = field(default_factory=list)


def new_id() -> str:
    return secrets.token_hex(12)


def _display_name(filename: str | None) -> str:
    name = (filename or "unnamed").replace("\\", "/").rsplit("/", 1)[-1]
    # Control characters (NUL, newlines) and format characters (U+202E and the other bidi
    # overrides, zero-width joiners) would let a name break log lines or show as another name.
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    name = " ".join(name.split()).strip(" .")
    return name[:120] or "unnamed"


class UploadReceiver:
    """Parses one multipart request into validated, stored images."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.incoming = settings.incoming_dir
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.parts: list[_Part] = []
        self.stored: list[StoredUpload] = []
        self._written: list[Path] = []
        self._part: _Part | None = None
        self._field_name = b""
        self._field_value = b""
        self._ended = False  # the closing boundary (`--boundary--`) was read

    # --- multipart callbacks ------------------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._field_value += data[start:end]

    def _on_header_end(self) -> None:
        assert self._part is not None
        self._part.header_fields.append((self._field_name.lower(), self._field_value))
        self._field_name = self._field_value = b""

    def _on_headers_finished(self) -> None:
        part = self._part
        assert part is not None
        for name, value in part.header_fields:
            if name == b"content-disposition":
                _, options = parse_options_header(value)
                part.name = options.get(b"name", b"").decode("utf-8", "replace")
                raw = options.get(b"filename")
                part.filename = raw.decode("utf-8", "replace") if raw is not None else None
        if part.filename is None:
            if sum(p.filename is None for p in self.parts) >= MAX_TEXT_FIELDS:
                raise UploadError("upload_too_many_fields", limit=MAX_TEXT_FIELDS)
        else:
            if sum(p.filename is not None for p in self.parts) >= self.settings.max_files_per_upload:
                raise UploadError("upload_too_many_files", limit=self.settings.max_files_per_upload)
            part.temp = self.incoming / f"{new_id()}.part"
            self._written.append(part.temp)
            part.handle = open(part.temp, "wb")
        self.parts.append(part)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        assert part is not None
        part.size += end - start
        name = _display_name(part.filename)
        if part.handle is None:
            if part.size > MAX_FIELD_BYTES:
                raise UploadError("upload_field_too_large")
            return
        if part.size > self.settings.max_upload_bytes:
            raise UploadError("upload_file_too_large", name=name, mb=messages.num(self.settings.max_upload_mb))
        part.handle.write(data[start:end])
        if not part.probed and part.size >= HEADER_PROBE_BYTES:
            part.handle.flush()
            part.probed = self._check_header(part, partial=True)

    def _on_end(self) -> None:
        self._ended = True

    def _on_part_end(self) -> None:
        part = self._part
        if part is not None and part.handle is not None:
            part.handle.close()
            part.handle = None

    # --- validation ---------------------------------------------------------------------------
    def _check_header(self, part: _Part, partial: bool) -> bool:
        """Format and pixel limits from the image header; True once the header was readable."""
        name = _display_name(part.filename)
        assert part.temp is not None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(part.temp) as img:
                    fmt, (w, h) = img.format, img.size
        except Image.DecompressionBombError:
            # Pillow's own guard fired first (over twice its default pixel cap): same answer as ours.
            raise UploadError(
                "image_pixel_bomb", name=name, megapixels=messages.num(self.settings.max_image_pixels / 1e6)
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError):
            if partial:
                return False  # not enough bytes yet to tell; checked again at the end
            known = _sniff(part.temp)
            if known is not None:
                raise UploadError("image_corrupt_format", name=name, format=known) from None
            raise UploadError("image_not_an_image", name=name) from None
        if fmt not in ALLOWED_FORMATS:
            raise UploadError("image_format_unsupported", name=name, format=fmt)
        limit = self.settings.max_image_pixels
        if w * h > limit or max(w, h) > self.settings.max_image_edge:
            raise UploadError(
                "image_too_large",
                name=name,
                width=w,
                height=h,
                megapixels=messages.num(limit / 1e6),
                edge=self.settings.max_image_edge,
            )
        if w < 16 or h < 16:
            raise UploadError("image_too_small", name=name, width=w, height=h)
        return True

    def _store(self, part: _Part) -> StoredUpload:
        name = _display_name(part.filename)
        assert part.temp is not None
        if part.size == 0:
            raise UploadError("image_empty", name=name)
        self._check_header(part, partial=False)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(part.temp) as img:
                    img.load()
                    upright = normalize_upload(img)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UploadError("image_corrupt", name=name, error=str(exc)) from exc
        upload_id = new_id()
        # Written under .incoming and synced; `move_into_place` renames it there after its row exists.
        staged = self.incoming / upload_name(upload_id)
        self._written.append(staged)
        with open(staged, "wb") as fh:
            upright.save(fh, format="PNG", optimize=False, compress_level=3)
            fh.flush()
            os.fsync(fh.fileno())
        return StoredUpload(upload_id, name, upright.width, upright.height, staged.stat().st_size)

    def move_into_place(self, item: StoredUpload) -> None:
        """Moves a stored image where it is served; call once its row is saved."""
        target = upload_path(self.settings, item.id)
        self._written.append(target)
        move_into(self.incoming / upload_name(item.id), target)

    async def _store_all(self, files: list[_Part]) -> list[StoredUpload]:
        workers = self.settings.image_workers
        if workers <= 0:  # the old inline path, kept as the benchmark's reference
            return [self._store(p) for p in files]
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(image_pool(workers), self._store, p) for p in files]

    # --- driver -------------------------------------------------------------------------------
    async def receive(self, content_type: str, body: AsyncIterator[bytes]) -> list[StoredUpload]:
        ctype, options = parse_options_header(content_type or "")
        boundary = options.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise UploadError("upload_not_multipart")
        parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_end": self._on_end,
            },
        )
        try:
            async for chunk in body:
                parser.write(chunk)
            parser.finalize()
            if not self._ended:
                # A body cut off inside the last file (the client or a proxy stopped early) ends
                # without `--boundary--`: what arrived is not the whole upload, so none of it is kept.
                raise UploadError("upload_unterminated")
            files = [p for p in self.parts if p.filename is not None and p.name == "files"]
            if not files:
                raise UploadError("upload_no_image")
            self.stored = await self._store_all(files)
            return self.stored
        except UploadError:
            self.discard()
            raise
        except Exception as exc:
            self.discard()
            if is_disk_full(exc):
                raise UploadError("disk_full") from exc
            if isinstance(exc, OSError):  # the server could not write: not the client's fault
                log.error("could not store an upload: %s", exc)
                raise UploadError("upload_store_failed") from exc
            # Anything else is a malformed body: the client's error.
            raise UploadError("upload_malformed", error=str(exc)) from exc
        finally:
            self._remove_temps()

    def _remove_temps(self) -> None:
        for part in self.parts:
            if part.handle is not None:
                part.handle.close()
            if part.temp is not None:
                part.temp.unlink(missing_ok=True)

    def discard(self) -> None:
        """Removes every file this request wrote."""
        self._remove_temps()
        for path in self._written:
            path.unlink(missing_ok=True)
        self.stored = []


def move_into(source: Path, target: Path) -> None:
    """Renames `source` to `target` atomically, also when they are on different file systems
    (Docker mounts the uploads folder as its own volume, apart from the data folder): then the
    bytes are copied to a hidden name beside the target first, which /files/ never serves."""
    try:
        os.replace(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        shutil.copyfile(source, temp)
        with open(temp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    source.unlink(missing_ok=True)


def recover_incoming(settings: Settings, has_upload) -> None:
    """Start-up tidying after a crash: `has_upload(id)` tells whether a row exists.

    A finished image whose row was saved but not yet renamed is moved into place; everything else
    in `.incoming` (parts of interrupted requests) is removed, and so is any stored image file
    without a row (written by a version that saved the file before the row).
    """
    incoming = settings.incoming_dir
    uploads = settings.uploads_dir
    legacy = uploads / ".incoming"  # where earlier versions kept parts: inside the served folder
    if legacy.is_dir():
        shutil.rmtree(legacy, ignore_errors=True)
    moved = removed = 0
    if incoming.is_dir():
        for path in incoming.iterdir():
            try:
                if STORED_NAME.match(path.name) and has_upload(path.stem) and not (uploads / path.name).exists():
                    move_into(path, uploads / path.name)
                    moved += 1
                elif path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
                else:
                    path.unlink(missing_ok=True)
                    removed += 1
            except OSError as exc:
                log.warning("could not tidy %s: %s", path, exc)
    if uploads.is_dir():
        for path in uploads.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):  # a cut-off move_into
                path.unlink(missing_ok=True)
                removed += 1
            elif STORED_NAME.match(path.name) and not has_upload(path.stem):
                try:
                    path.unlink(missing_ok=True)
                    removed += 1
                except OSError as exc:
                    log.warning("could not remove orphan upload %s: %s", path, exc)
    if moved or removed:
        log.info("uploads tidied after an interrupted run: %d finished, %d leftovers removed", moved, removed)
