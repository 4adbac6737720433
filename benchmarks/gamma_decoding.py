"""Before/after of the largest avoidable cropping cost found: decoding the whole image to
linear light with a float power (before) vs a 256-entry table lookup (after, crops.decode_gamma).

    python benchmarks/gamma_decoding.py
"""
import time

import numpy as np

from _common import machine


def per_call_ms(function, repeats: int = 50) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    from metrabs_ros.bundled import SAMPLE_SEQUENCE
    from metrabs_ros.crops import decode_gamma
    from metrabs_ros.data.dataset import load_sample
    image = load_sample(SAMPLE_SEQUENCE, 0).image
    before = per_call_ms(lambda: (image.astype(np.float32) / 255) ** 2.2)
    after = per_call_ms(lambda: decode_gamma(image))
    assert np.array_equal(decode_gamma(image), (image.astype(np.float32) / 255) ** np.float32(2.2))
    print(f'machine: {machine()}')
    print(f'{image.shape[1]}x{image.shape[0]} image to linear light: power {before:.2f} ms, '
          f'table {after:.2f} ms ({before / after:.1f}x)')


if __name__ == '__main__':
    main()
