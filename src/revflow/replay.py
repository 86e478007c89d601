"""A uniform-sampling ring-buffer replay memory of float32 transitions, in numpy."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ReplayBuffer"]

_FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class ReplayBuffer:
    """Ring buffer of ``(obs, action, reward, next_obs, terminated)``, all float32.

    ``terminated`` is 1.0 for a true environment termination (bootstrap from zero) and 0.0
    otherwise, truncations included. Once ``capacity`` transitions are stored, new ones
    overwrite the oldest.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        for name, value in (("capacity", capacity), ("obs_dim", obs_dim), ("act_dim", act_dim)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.capacity = int(capacity)
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self._shapes = {
            "obs": (self.obs_dim,),
            "action": (self.act_dim,),
            "reward": (),
            "next_obs": (self.obs_dim,),
            "terminated": (),
        }
        self._data = {
            k: np.zeros((self.capacity, *shape), dtype=np.float32)
            for k, shape in self._shapes.items()
        }
        self._ptr = 0  # next write position
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (
            f"ReplayBuffer(capacity={self.capacity}, obs_dim={self.obs_dim}, "
            f"act_dim={self.act_dim}, size={self._size})"
        )

    # ------------------------------------------------------------------------------------

    def add(self, obs: Any, action: Any, reward: Any, next_obs: Any, terminated: Any) -> None:
        """Store one transition, or a batch of them (arrays with one extra leading axis)."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim == 1:
            n, lead = None, ()
        elif obs.ndim == 2:
            n = obs.shape[0]
            lead = (n,)
        else:
            raise ValueError(f"obs must have shape ({self.obs_dim},) or (B, {self.obs_dim})")
        values = {
            "obs": obs,
            "action": np.asarray(action, dtype=np.float32),
            "reward": np.asarray(reward, dtype=np.float32),
            "next_obs": np.asarray(next_obs, dtype=np.float32),
            "terminated": np.asarray(terminated, dtype=np.float32),
        }
        for k, v in values.items():
            expected = (*lead, *self._shapes[k])
            if v.shape != expected:
                raise ValueError(f"{k} has shape {v.shape}, expected {expected}")
        if n is None:
            for k, v in values.items():
                self._data[k][self._ptr] = v
            self._ptr = (self._ptr + 1) % self.capacity
            self._size = min(self._size + 1, self.capacity)
            return
        if n == 0:
            return
        if n > self.capacity:  # only the newest `capacity` transitions survive
            values = {k: v[-self.capacity :] for k, v in values.items()}
            self._ptr = (self._ptr + n - self.capacity) % self.capacity
            n = self.capacity
        idx = (self._ptr + np.arange(n)) % self.capacity
        for k, v in values.items():
            self._data[k][idx] = v
        self._ptr = (self._ptr + n) % self.capacity
        self._size = min(self._size + n, self.capacity)

    def sample(
        self, rng: np.random.Generator, batch_size: int, num_batches: int = 1
    ) -> dict[str, np.ndarray]:
        """``num_batches`` batches drawn uniformly with replacement from stored transitions.

        Returns arrays shaped ``(num_batches, batch_size, ...)`` (fresh copies).
        """
        if self._size == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer; add transitions first")
        if batch_size < 1 or num_batches < 1:
            raise ValueError(
                f"batch_size and num_batches must be >= 1, got {batch_size} and {num_batches}"
            )
        idx = rng.integers(0, self._size, size=(num_batches, batch_size))
        return {k: v[idx] for k, v in self._data.items()}

    # ------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray | int]:
        """The filled slots (in storage order), the write position and the sizes.

        Storage order is kept so that a restored buffer samples exactly like the original
        under the same generator (bit-exact training resumption).
        """
        state: dict[str, np.ndarray | int] = {
            k: v[: self._size].copy() for k, v in self._data.items()
        }
        state.update(
            ptr=self._ptr, capacity=self.capacity, obs_dim=self.obs_dim, act_dim=self.act_dim
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output; raises ``ValueError`` on any mismatch.

        ``ptr`` may be absent (then the slots are taken as oldest-first).
        """
        missing = [k for k in (*_FIELDS, "capacity", "obs_dim", "act_dim") if k not in state]
        if missing:
            raise ValueError(f"replay state is missing keys: {', '.join(missing)}")
        for k in ("capacity", "obs_dim", "act_dim"):
            if int(state[k]) != getattr(self, k):
                raise ValueError(
                    f"replay state {k}={int(state[k])} does not match this buffer's "
                    f"{k}={getattr(self, k)}"
                )
        arrays = {k: np.asarray(state[k]) for k in _FIELDS}
        size = arrays["obs"].shape[0] if arrays["obs"].ndim else -1
        if not 0 <= size <= self.capacity:
            raise ValueError(
                f"replay state obs has shape {arrays['obs'].shape}; expected (n, {self.obs_dim}) "
                f"with n <= capacity={self.capacity}"
            )
        for k, v in arrays.items():
            expected = (size, *self._shapes[k])
            if v.shape != expected:
                raise ValueError(f"replay state {k} has shape {v.shape}, expected {expected}")
        ptr = int(state.get("ptr", size % self.capacity))
        valid_ptr = (0 <= ptr < self.capacity) if size == self.capacity else ptr == size
        if not valid_ptr:
            raise ValueError(
                f"replay state ptr={ptr} is inconsistent with {size} stored transitions and "
                f"capacity={self.capacity}"
            )
        for k, v in arrays.items():
            self._data[k][:size] = v
            self._data[k][size:] = 0.0
        self._size = size
        self._ptr = ptr
