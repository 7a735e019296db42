"""Save a top-level X window, as the X server shows it, to a PNG.

Usage: python3 xshot.py TITLE OUT.png

Used by the desktop test instead of WebDriver's screenshot (see webdriver.mjs). Needs only
libX11 (which GTK already pulls in) and the standard library. Exits 1 when no viewable
top-level window has the title.
"""

import ctypes
import ctypes.util
import struct
import sys
import zlib

ZPIXMAP = 2
ALL_PLANES = 0xFFFFFFFF
IS_VIEWABLE = 2


class XImage(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("xoffset", ctypes.c_int),
        ("format", ctypes.c_int),
        ("data", ctypes.POINTER(ctypes.c_ubyte)),
        ("byte_order", ctypes.c_int),
        ("bitmap_unit", ctypes.c_int),
        ("bitmap_bit_order", ctypes.c_int),
        ("bitmap_pad", ctypes.c_int),
        ("depth", ctypes.c_int),
        ("bytes_per_line", ctypes.c_int),
        ("bits_per_pixel", ctypes.c_int),
        ("red_mask", ctypes.c_ulong),
        ("green_mask", ctypes.c_ulong),
        ("blue_mask", ctypes.c_ulong),
    ]


class XWindowAttributes(ctypes.Structure):
    _fields_ = [
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("border_width", ctypes.c_int),
        ("depth", ctypes.c_int),
        ("visual", ctypes.c_void_p),
        ("root", ctypes.c_ulong),
        ("class_", ctypes.c_int),
        ("bit_gravity", ctypes.c_int),
        ("win_gravity", ctypes.c_int),
        ("backing_store", ctypes.c_int),
        ("backing_planes", ctypes.c_ulong),
        ("backing_pixel", ctypes.c_ulong),
        ("save_under", ctypes.c_int),
        ("colormap", ctypes.c_ulong),
        ("map_installed", ctypes.c_int),
        ("map_state", ctypes.c_int),
        ("all_event_masks", ctypes.c_long),
        ("your_event_mask", ctypes.c_long),
        ("do_not_propagate_mask", ctypes.c_long),
        ("override_redirect", ctypes.c_int),
        ("screen", ctypes.c_void_p),
    ]


def load_x11():
    x = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x.XOpenDisplay.restype = ctypes.c_void_p
    x.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x.XDefaultRootWindow.restype = ctypes.c_ulong
    x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x.XQueryTree.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.POINTER(ctypes.c_ulong)),
        ctypes.POINTER(ctypes.c_uint),
    ]
    x.XFetchName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_char_p)]
    x.XGetWindowAttributes.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(XWindowAttributes)]
    x.XGetImage.restype = ctypes.POINTER(XImage)
    x.XGetImage.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_ulong,
        ctypes.c_int,
    ]
    return x


def find_window(x, display, title):
    """The first viewable child of the root window named `title` (no window manager: the
    app's windows are the root's children)."""
    root = x.XDefaultRootWindow(display)
    root_ret, parent = ctypes.c_ulong(), ctypes.c_ulong()
    children, count = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
    if not x.XQueryTree(display, root, ctypes.byref(root_ret), ctypes.byref(parent), ctypes.byref(children), ctypes.byref(count)):
        return None
    for i in range(count.value):
        win = children[i]
        name = ctypes.c_char_p()
        if x.XFetchName(display, win, ctypes.byref(name)) and name.value == title.encode():
            attrs = XWindowAttributes()
            x.XGetWindowAttributes(display, win, ctypes.byref(attrs))
            if attrs.map_state == IS_VIEWABLE:
                return win, attrs.width, attrs.height
    return None


def png(width, height, rgb_rows):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + row for row in rgb_rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: xshot.py TITLE OUT.png")
    title, out = sys.argv[1], sys.argv[2]
    x = load_x11()
    display = x.XOpenDisplay(None)
    if not display:
        sys.exit("xshot: cannot open the X display (is DISPLAY set?)")
    found = find_window(x, display, title)
    if not found:
        print(f"xshot: no viewable window titled {title!r}", file=sys.stderr)
        sys.exit(1)
    win, width, height = found
    image = x.XGetImage(display, win, 0, 0, width, height, ALL_PLANES, ZPIXMAP)
    if not image:
        sys.exit("xshot: XGetImage failed")
    img = image.contents
    if img.bits_per_pixel != 32:
        sys.exit(f"xshot: {img.bits_per_pixel} bits per pixel not supported (24-bit TrueColor expected)")
    data = ctypes.string_at(img.data, img.bytes_per_line * height)
    rows = []
    for r in range(height):
        line = data[r * img.bytes_per_line : r * img.bytes_per_line + width * 4]
        rgb = bytearray(width * 3)
        # Little-endian BGRX pixels.
        rgb[0::3], rgb[1::3], rgb[2::3] = line[2::4], line[1::4], line[0::4]
        rows.append(bytes(rgb))
    with open(out, "wb") as f:
        f.write(png(width, height, rows))


if __name__ == "__main__":
    main()
