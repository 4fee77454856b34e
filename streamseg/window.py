"""A window that shows a run's overlay as it happens (``segment --show``); ``q`` or Esc asks to stop.

Kept out of the pipeline: the library never opens a window, and all of OpenCV's GUI calls happen in
the one thread that owns the window (the caller's), as Qt and Cocoa require.
"""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np

from .errors import InputError

STOP_KEYS = (ord("q"), ord("Q"), 27)  # 27: Esc


def has_display() -> bool:
    """Whether a window can open: on Linux and other X11/Wayland systems that needs a display server."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Window:
    """``show(image, status)`` each frame; it returns False once the user pressed q or Esc or closed the window."""

    def __init__(self, title: str):
        if not has_display():
            # Checked first: OpenCV's Qt backend aborts the process, not just the call, without a display.
            raise InputError("--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set")
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise InputError(f"--show: cannot open a window ({exc.msg or exc})") from None

    def show(self, image: np.ndarray, status: str) -> bool:
        picture = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        # Dark outline under white text: readable on any scene.
        for color, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):
            cv2.putText(picture, status, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, thickness, cv2.LINE_AA)
        cv2.imshow(self.title, picture)
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        return key not in STOP_KEYS and not closed

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)  # lets the GUI loop actually remove it
