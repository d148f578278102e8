"""The image size written inside compressed pixel data, read before any decoder runs.

A DICOM file's size check reads Rows and Columns from its header, but the decoders trust the
dimensions written inside the compressed stream: a 13 KB JPEG whose frame header says
65535 x 65535 made the decoder reserve gigabytes. :func:`check_frame` parses those
dimensions (nothing is decoded) and refuses a stream that disagrees with the DICOM header or
exceeds the pixel limit:

- JPEG (baseline, extended, progressive, lossless: SOF0-SOF15 except DHT/JPG/DAC, and the
  hierarchical DHP) and JPEG-LS (SOF55, and the LSE "oversize dimension" record): every frame
  header in the stream, not only the first.
- JPEG 2000 and HTJ2K: the SIZ marker of a raw codestream, or of the ``jp2c`` box of a JP2
  file (its ``ihdr`` box as well); the number of tiles is bounded too.
- RLE Lossless: the 64-byte segment header (segment count = samples x bytes per sample,
  offsets inside the fragment and in order).

:func:`jpeg_frame` is also the reader's JPEG (raster file) header parser.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

from hdcnn.errors import MammogramError

#: JPEG start-of-frame markers (SOF0-SOF15 without DHT 0xC4, JPG 0xC8, DAC 0xCC), JPEG-LS
#: SOF55 (0xF7) and the hierarchical DHP (0xDE), which carries the same fields.
SOF_MARKERS = frozenset({*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC} | {0xF7, 0xDE})
_JPEG_LS_SOF = 0xF7
_LSE = 0xF8
#: JPEG 2000 caps the tile index at 65534 (Isot): more tiles than this is no valid stream.
MAX_J2K_TILES = 65535
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K_START = b"\xff\x4f\xff\x51"  # SOC then SIZ

# Transfer syntax UIDs by codec (DICOM PS3.5 / PS3.6); decoders exist for these only.
_JPEG = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
         "1.2.840.10008.1.2.4.70")  # fmt: skip
_JPEG_LS = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
_J2K = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")  # fmt: skip
_RLE = ("1.2.840.10008.1.2.5",)
CODECS: dict[str, str] = {
    **dict.fromkeys(_JPEG, "JPEG"),
    **dict.fromkeys(_JPEG_LS, "JPEG-LS"),
    **dict.fromkeys(_J2K, "JPEG 2000"),
    **dict.fromkeys(_RLE, "RLE"),
}


@dataclass(frozen=True)
class FrameHeader:
    """What a compressed stream says about the image it holds.

    Attributes:
        codec: ``"JPEG"`` | ``"JPEG-LS"`` | ``"JPEG 2000"`` | ``"RLE"``.
        rows, columns: image height and width in pixels (RLE: 0, it does not say).
        components: samples per pixel (RLE: segments / bytes per sample).
        precision: bits per sample (the largest over the components; RLE: 8 x bytes).
    """

    codec: str
    rows: int
    columns: int
    components: int
    precision: int


def codec_of(transfer_syntax: str) -> str | None:
    """The codec of a compressed transfer syntax (``"JPEG"`` ...), None where not known."""
    return CODECS.get(str(transfer_syntax).strip())


# ----------------------------------------------------------------------------- JPEG


def jpeg_frame(data: bytes, source: str) -> FrameHeader:
    """The frame header of a JPEG or JPEG-LS stream; every frame header must agree.

    Markers are walked from SOI: segment by segment up to the first scan, then through the
    entropy-coded data (where 0xFF is followed by a stuffed 0x00, a restart marker, or in
    JPEG-LS a byte below 0x80) to the next marker, until EOI. A JPEG-LS LSE "oversize image
    dimension" record (ID 4) counts as a frame header too.

    Raises:
        MammogramError: no SOI, a segment running past the end, a frame header of zero
            width or height, frame headers that disagree, or none at all.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise MammogramError(source, "corrupt JPEG stream: it does not start with SOI")
    found: list[FrameHeader] = []
    i = 2
    while i + 1 < n:
        j = data.find(b"\xff", i)
        if j < 0 or j + 1 >= n:
            break
        marker = data[j + 1]
        if marker < 0xC0 or marker == 0xFF or 0xD0 <= marker <= 0xD7:
            i = j + 1  # entropy-coded data, stuffing, fill byte or restart marker
            continue
        if marker == 0xD9:  # EOI: the decoder stops here
            break
        if marker == 0xD8:
            raise MammogramError(source, "corrupt JPEG stream: a second SOI inside the image")
        if j + 4 > n:
            break
        (length,) = struct.unpack(">H", data[j + 2 : j + 4])
        end = j + 2 + length
        if length < 2 or end > n:
            raise MammogramError(
                source,
                f"corrupt JPEG stream: marker 0x{marker:02X} segment of {length} bytes runs "
                "past the end of the data",
            )
        body = data[j + 4 : end]
        if marker in SOF_MARKERS:
            found.append(_sof(body, marker, source))
        elif marker == _LSE and body[:1] == b"\x04":
            found.append(_lse_dimensions(body, found, source))
        i = end
    if not found:
        raise MammogramError(source, "corrupt JPEG stream: no frame header (SOF) found")
    first = found[0]
    for other in found[1:]:
        if (other.rows, other.columns, other.components) != (
            first.rows,
            first.columns,
            first.components,
        ):
            raise MammogramError(
                source,
                f"corrupt JPEG stream: frame headers disagree ({first.rows}x{first.columns} "
                f"and {other.rows}x{other.columns})",
            )
    return first


def _sof(body: bytes, marker: int, source: str) -> FrameHeader:
    if len(body) < 6:
        raise MammogramError(source, f"corrupt JPEG stream: short frame header 0x{marker:02X}")
    precision = body[0]
    rows, columns = struct.unpack(">HH", body[1:5])
    components = body[5]
    if rows == 0 or columns == 0:
        raise MammogramError(
            source,
            f"JPEG frame header gives {rows}x{columns} pixels (a size defined later in the "
            "stream is not supported)",
        )
    codec = "JPEG-LS" if marker == _JPEG_LS_SOF else "JPEG"
    return FrameHeader(codec, rows, columns, components, precision)


def _lse_dimensions(body: bytes, found: list[FrameHeader], source: str) -> FrameHeader:
    """JPEG-LS LSE ID 4: ``Wxy`` bytes per value, then height and width."""
    wxy = body[1] if len(body) > 1 else 0
    if not 1 <= wxy <= 4 or len(body) < 2 + 2 * wxy:
        raise MammogramError(source, "corrupt JPEG-LS stream: malformed LSE dimension record")
    rows = int.from_bytes(body[2 : 2 + wxy], "big")
    columns = int.from_bytes(body[2 + wxy : 2 + 2 * wxy], "big")
    base = found[-1] if found else FrameHeader("JPEG-LS", rows, columns, 0, 0)
    return FrameHeader("JPEG-LS", rows, columns, base.components, base.precision)


# ----------------------------------------------------------------------------- JPEG 2000


def j2k_frame(data: bytes, source: str) -> FrameHeader:
    """The image size of a JPEG 2000 codestream (SOC + SIZ) or JP2 file (``jp2c`` box).

    Raises:
        MammogramError: neither form, a malformed SIZ or box, more than
            :data:`MAX_J2K_TILES` tiles, or a JP2 ``ihdr`` that disagrees with its SIZ.
    """
    if data.startswith(_J2K_START):
        return _siz(data, source)
    if not data.startswith(_JP2_SIGNATURE):
        raise MammogramError(source, "not a JPEG 2000 codestream (no SOC/SIZ or JP2 signature)")
    ihdr: tuple[int, int, int] | None = None
    for kind, start, end in _boxes(data, 0, len(data), source):
        if kind == b"jp2h":
            for sub, s, e in _boxes(data, start, end, source):
                if sub == b"ihdr" and e - s >= 10:
                    height, width, comps = struct.unpack(">IIH", data[s : s + 10])
                    ihdr = (height, width, comps)
        elif kind == b"jp2c":
            header = _siz(data[start:end], source)
            if ihdr is not None and ihdr != (header.rows, header.columns, header.components):
                raise MammogramError(
                    source,
                    f"JP2 image header says {ihdr[0]}x{ihdr[1]} x {ihdr[2]} components, its "
                    f"codestream {header.rows}x{header.columns} x {header.components}",
                )
            return header
    raise MammogramError(source, "JP2 file without a codestream (jp2c) box")


def _boxes(data: bytes, start: int, end: int, source: str):  # type: ignore[no-untyped-def]
    """``(type, content start, content end)`` of the JP2 boxes in ``data[start:end]``."""
    i = start
    while i + 8 <= end:
        length, kind = struct.unpack(">I4s", data[i : i + 8])
        head = 8
        if length == 1:
            if i + 16 > end:
                break
            (length,) = struct.unpack(">Q", data[i + 8 : i + 16])
            head = 16
        elif length == 0:
            length = end - i
        if length < head or i + length > end:
            raise MammogramError(
                source, f"corrupt JP2 file: box {kind!r} of {length} bytes runs past its end"
            )
        yield kind, i + head, i + length
        i += length


def _siz(code: bytes, source: str) -> FrameHeader:
    if not code.startswith(_J2K_START) or len(code) < 42:
        raise MammogramError(source, "corrupt JPEG 2000 codestream (no SIZ marker after SOC)")
    (lsiz, _rsiz, xsiz, ysiz, xo, yo, xt, yt, xto, yto, csiz) = struct.unpack(
        ">HHIIIIIIIIH", code[4:42]
    )
    if csiz < 1 or lsiz != 38 + 3 * csiz or len(code) < 4 + lsiz:
        raise MammogramError(
            source, f"corrupt JPEG 2000 SIZ marker ({csiz} components in {lsiz} bytes)"
        )
    if xsiz <= xo or ysiz <= yo or xt == 0 or yt == 0 or xto > xo or yto > yo:
        raise MammogramError(source, "corrupt JPEG 2000 SIZ marker (empty image or tile grid)")
    tiles = -(-(xsiz - xto) // xt) * -(-(ysiz - yto) // yt)
    if tiles > MAX_J2K_TILES:
        raise MammogramError(
            source, f"JPEG 2000 stream of {tiles} tiles (at most {MAX_J2K_TILES} are valid)"
        )
    comps = code[42 : 42 + 3 * csiz]
    precision = max((ssiz & 0x7F) + 1 for ssiz in comps[0::3])
    if 0 in comps[1::3] or 0 in comps[2::3]:
        raise MammogramError(source, "corrupt JPEG 2000 SIZ marker (component sub-sampling 0)")
    return FrameHeader("JPEG 2000", ysiz - yo, xsiz - xo, csiz, precision)


# ----------------------------------------------------------------------------- RLE


def rle_frame(data: bytes, source: str, *, segments: int | None = None) -> FrameHeader:
    """The segment header of an RLE Lossless frame (DICOM PS3.5 G.5).

    Args:
        data: the frame.
        source: name for messages.
        segments: the segment count the DICOM header needs (samples x bytes per sample).

    Raises:
        MammogramError: fewer than 64 bytes, 0 or more than 15 segments, another count than
            ``segments``, a first offset other than 64, offsets out of order or beyond the
            end of the frame.
    """
    if len(data) < 64:
        raise MammogramError(source, f"corrupt RLE frame: {len(data)} bytes, no 64-byte header")
    count, *offsets = struct.unpack("<16I", data[:64])
    if not 1 <= count <= 15:
        raise MammogramError(source, f"corrupt RLE header: {count} segments (1 to 15 allowed)")
    if segments is not None and count != segments:
        raise MammogramError(
            source, f"RLE frame has {count} segments, the DICOM header needs {segments}"
        )
    if offsets[0] != 64:
        raise MammogramError(
            source, f"corrupt RLE header: first segment at offset {offsets[0]}, expected 64"
        )
    for before, offset in itertools.pairwise(offsets[:count]):
        if not before < offset < len(data):
            raise MammogramError(
                source,
                f"corrupt RLE header: segment offset {offset} out of order or beyond the "
                f"{len(data)}-byte frame",
            )
    return FrameHeader("RLE", 0, 0, count, 8)


# ----------------------------------------------------------------------------- check


def check_frame(
    frame: bytes,
    transfer_syntax: str,
    *,
    rows: int,
    columns: int,
    samples: int,
    bits_allocated: int,
    max_pixels: int,
    source: str,
) -> FrameHeader:
    """Refuse an encoded frame whose own header disagrees with the DICOM header.

    Args:
        frame: the encoded frame as the decoder would get it (all its fragments joined).
        transfer_syntax: the file's transfer syntax UID.
        rows, columns, samples, bits_allocated: the DICOM header's Rows, Columns,
            SamplesPerPixel and BitsAllocated.
        max_pixels: the pixel limit (:data:`hdcnn.reader.MAX_PIXELS`).
        source: name for messages.

    Returns:
        The stream's :class:`FrameHeader`.

    Raises:
        MammogramError: an unknown compressed transfer syntax; a stream whose size exceeds
            ``max_pixels`` or differs from Rows x Columns; other components than
            SamplesPerPixel; a precision above BitsAllocated; an RLE segment count other
            than samples x bytes per sample; a malformed stream header.
    """
    codec = codec_of(transfer_syntax)
    if codec is None:
        raise MammogramError(
            source, f"no size check for compressed transfer syntax {transfer_syntax}: refused"
        )
    if codec == "RLE":
        return rle_frame(frame, source, segments=samples * -(-bits_allocated // 8))
    header = j2k_frame(frame, source) if codec == "JPEG 2000" else jpeg_frame(frame, source)
    what = f"the {header.codec} stream"
    if header.rows * header.columns > max_pixels:
        raise MammogramError(
            source,
            f"{what} claims {header.rows}x{header.columns} pixels, larger than the limit of "
            f"{max_pixels} pixels",
        )
    if (header.rows, header.columns) != (rows, columns):
        raise MammogramError(
            source,
            f"{what} claims {header.rows}x{header.columns} pixels, the DICOM header "
            f"Rows x Columns {rows}x{columns}",
        )
    if header.components != samples:
        raise MammogramError(
            source,
            f"{what} has {header.components} components, the DICOM header "
            f"SamplesPerPixel {samples}",
        )
    if not 1 <= header.precision <= bits_allocated:
        raise MammogramError(
            source,
            f"{what} has {header.precision}-bit samples, the DICOM header "
            f"BitsAllocated {bits_allocated}",
        )
    return header
