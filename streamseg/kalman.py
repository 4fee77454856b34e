"""The motion model of a track: a constant-velocity Kalman filter on a box's centre and size."""

from __future__ import annotations

import numpy as np

from .geometry import to_cxcywh, to_xyxy


class KalmanBox:
    """Constant-velocity Kalman filter on (cx, cy, w, h); noise scales with the box, as in ByteTrack.

    Velocities are per step, the tracker's typical frame interval, as ByteTrack's noise is per frame.
    """

    POSITION_NOISE, VELOCITY_NOISE = 1 / 20, 1 / 160

    def __init__(self, box: np.ndarray):
        self.x = np.concatenate([to_cxcywh(box), np.zeros(4)])
        scale = np.tile(self.x[2:4], 2)
        self.P = np.diag(np.square(np.concatenate([2 * self.POSITION_NOISE * scale, 10 * self.VELOCITY_NOISE * scale])))

    def predict(self, steps: float) -> None:
        """Move ``steps`` frame intervals ahead (fractional or several after a gap)."""
        KalmanBox.predict_all([self], steps)

    @classmethod
    def predict_all(cls, filters: list[KalmanBox], steps: float) -> None:
        """Move every filter ``steps`` ahead at once: one set of array operations for a crowd, not one per track.

        The transition F adds ``steps`` times each velocity to its position; ``F P F^T`` is written out in
        the blocks of P (positions and velocities), which is all the matrix product does.
        """
        if not filters:
            return
        x, P = np.stack([f.x for f in filters]), np.stack([f.P for f in filters])
        size = np.tile(x[:, 2:4], 2)  # the noise follows the size before the move
        noise = np.square(np.concatenate([cls.POSITION_NOISE * size, cls.VELOCITY_NOISE * size], 1)) * max(steps, 1e-3)
        x[:, :4] += steps * x[:, 4:]
        x[:, 2:4] = np.maximum(x[:, 2:4], 1.0)
        P[:, :4] += steps * P[:, 4:]  # F P: position rows take on their velocity rows
        P[:, :, :4] += steps * P[:, :, 4:]  # (F P) F^T: the same for the columns
        P[:, np.arange(8), np.arange(8)] += noise
        for f, state, covariance in zip(filters, x, P):
            f.x, f.P = state, covariance

    def rescale_step(self, factor: float) -> None:
        """The step became ``factor`` times as long: velocities are per step, so they scale with it."""
        scale = np.concatenate([np.ones(4), np.full(4, factor)])
        self.x[4:] *= factor
        self.P *= np.outer(scale, scale)

    def update(self, box: np.ndarray) -> None:
        KalmanBox.update_all([self], box[None])

    @classmethod
    def update_all(cls, filters: list[KalmanBox], boxes: np.ndarray) -> None:
        """Correct each filter with its measured box (``boxes`` (N, 4) xyxy), all at once."""
        if not filters:
            return
        x, P = np.stack([f.x for f in filters]), np.stack([f.P for f in filters])
        measured = to_cxcywh(boxes)
        noise = np.square(cls.POSITION_NOISE * np.tile(measured[:, 2:4], 2))
        innovation_cov = P[:, :4, :4] + noise[:, :, None] * np.eye(4)  # H P H^T + R: H picks the positions
        gain = P[:, :, :4] @ np.linalg.inv(innovation_cov)  # P H^T S^-1
        x = x + (gain @ (measured - x[:, :4])[:, :, None])[:, :, 0]
        P = P - gain @ P[:, :4, :]  # (I - K H) P
        for f, state, covariance in zip(filters, x, P):
            f.x, f.P = state, covariance

    def coast(self, full_size: np.ndarray) -> None:
        """Go on without measurements from here: the object has just gone out of sight.

        The box stops growing or shrinking: an unseen object keeps its size, and a box that shrank as
        its object went out of sight would otherwise be predicted down to a point that nothing is near.
        An object going behind something, or out of the frame, is cut from one side first: its visible
        box shrinks while one edge stands still, so the box centre moved at half the object's speed.
        The edge still moving is the object's speed, and the object is that edge plus ``full_size``.
        """
        for axis in (0, 1):
            centre_speed, size_speed = self.x[4 + axis], self.x[6 + axis]
            low_edge, high_edge = centre_speed - size_speed / 2, centre_speed + size_speed / 2
            if size_speed < 0 and low_edge * high_edge >= 0:  # shrinking, both edges the same way: cut on one side
                low_moves = abs(low_edge) > abs(high_edge)
                self.x[4 + axis] = low_edge if low_moves else high_edge
                grow = max(full_size[axis] - self.x[2 + axis], 0.0)
                self.x[axis] += grow / 2 if low_moves else -grow / 2  # the box grows out past the standing edge
                self.x[2 + axis] += grow
        self.x[6:8] = 0.0

    @property
    def box(self) -> np.ndarray:
        return to_xyxy(self.x[None, :4])[0]
