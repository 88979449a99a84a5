"""Pure-Python twin of the compiled core's generator (csrc/rng.hpp), bit for bit.

The space modules keep a plain-Python reference of every seeded C++ routine (sampling, mutation)
and the tests assert that both give the same cells for the same seed; this class is the
generator those references draw from. Slow (Python integers), meant for references and tests.
"""

from __future__ import annotations

_M64 = (1 << 64) - 1


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & _M64


class Rng:
    """xoshiro256** (Blackman & Vigna) seeded through splitmix64, as ``zc::Rng``."""

    def __init__(self, seed: int = 0):
        z = int(seed) & _M64
        s = []
        for _ in range(4):
            z = (z + 0x9E3779B97F4A7C15) & _M64
            r = z
            r = ((r ^ (r >> 30)) * 0xBF58476D1CE4E5B9) & _M64
            r = ((r ^ (r >> 27)) * 0x94D049BB133111EB) & _M64
            s.append(r ^ (r >> 31))
        self.s = s

    def next(self) -> int:
        s = self.s
        result = (_rotl((s[1] * 5) & _M64, 7) * 9) & _M64
        t = (s[1] << 17) & _M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def below(self, n: int) -> int:
        """Uniform integer in [0, n), n > 0 (Lemire's method, as the C++)."""
        x = self.next()
        m = x * n
        low = m & _M64
        if low < n:
            t = ((1 << 64) - n) % n
            while low < t:
                x = self.next()
                m = x * n
                low = m & _M64
        return m >> 64
