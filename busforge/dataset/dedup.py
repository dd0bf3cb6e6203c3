"""Near-duplicate images by perceptual hash (pHash), grouped transitively.

pHash: the image shrunk to 32x32 grey, its 2-D DCT, and one bit per low-frequency coefficient
(the top-left 8x8 block without the DC term) saying whether it is above their median. Resizing,
re-encoding, small crops of text or calipers and brightness changes move few bits; different
images differ in about half of them. Two images whose hashes differ in at most `max_distance`
bits are near-duplicates, and groups are the connected components of that relation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

HASH_SIDE = 32
LOW = 8
MAX_DISTANCE = 6  # of 63 bits; on busi_mini re-scans of one lesion are 0-6 apart, other pairs 12+


def phash(image: np.ndarray) -> int:
    """63-bit perceptual hash of a grey uint8 image."""
    from PIL import Image
    from scipy.fft import dctn

    small = Image.fromarray(image).resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX)
    coeffs = dctn(np.asarray(small, dtype=np.float64), norm="ortho")[:LOW, :LOW].ravel()[1:]
    bits = coeffs > np.median(coeffs)
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def duplicate_groups(hashes: list[int], max_distance: int = MAX_DISTANCE) -> list[list[int]]:
    """Groups (of 2 or more indices, each sorted, groups ordered by first index) of near-duplicates."""
    values = np.array(hashes, dtype=np.uint64)

    def near_pairs() -> Iterator[tuple[int, int]]:
        for i in range(len(hashes) - 1):
            # Vectorised Hamming distance from image i to all later ones.
            distances = np.bitwise_count(values[i + 1 :] ^ values[i])
            for j in np.flatnonzero(distances <= max_distance) + i + 1:
                yield i, int(j)

    return [group for group in connected_components(len(hashes), near_pairs()) if len(group) > 1]


def connected_components(n: int, links: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Components of the graph on 0..n-1 with these links (union-find), singletons included.

    Each component is sorted and they come ordered by their first index, whatever the order of
    the links: a component's root is always its smallest index.
    """
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in links:
        root_i, root_j = find(i), find(j)
        if root_i != root_j:
            parent[max(root_i, root_j)] = min(root_i, root_j)
    components: dict[int, list[int]] = {}
    for i in range(n):  # ascending, so each component is first met at its smallest index
        components.setdefault(find(i), []).append(i)
    return list(components.values())
