"""uint8 transforms (shapes, dtype, values, crop positions, view order) and normalize."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videoglore.data import transforms
from videoglore.data.transforms import NORMALIZATIONS, crop_boxes, normalize, train_transform

test_transform = transforms.test_transform
test_transform.__test__ = False  # a library function, not a test


def gradient_frames(T=6, H=48, W=64):
    """uint8 (T, H, W, 3): red grows left→right, green top→bottom, blue = frame number."""
    x = np.zeros((T, H, W, 3), np.uint8)
    x[..., 0] = np.linspace(0, 255, W).astype(np.uint8)[None, None, :]
    x[..., 1] = np.linspace(0, 255, H).astype(np.uint8)[None, :, None]
    x[..., 2] = (np.arange(T) * 10)[:, None, None]
    return x


def test_train_transform_shape_dtype_and_content():
    frames = gradient_frames()
    flips = set()
    for seed in range(12):
        out = train_transform(frames, (36, 48), 32, True, np.random.default_rng(seed))
        assert out.shape == (3, 6, 32, 32) and out.dtype == torch.uint8 and out.is_contiguous()
        # time and channels not mixed up: blue channel is the frame number
        assert out[2, :, 16, 16].tolist() == [0, 10, 20, 30, 40, 50]
        red = out[0, 0, 16].to(torch.int32)
        assert (red[-1] - red[0]).abs() > 20  # a crop of a gradient, not a constant
        flips.add(bool(red[-1] < red[0]))
        assert (out[1, 0, -1, 5].int() - out[1, 0, 0, 5].int()) > 0  # never flipped vertically
    assert flips == {True, False}  # both flipped and unflipped crops occur


def test_train_transform_without_flip_and_against_scale_then_crop():
    frames = gradient_frames(T=2)
    for seed in range(5):
        out = train_transform(frames, (48, 48), 48, False, np.random.default_rng(seed))
        # short side 48 == crop: the crop is a 48x48 window of the unscaled frame
        red = out[0, 0, 0].to(torch.int32)
        assert (red[-1] > red[0]).item()
        ref = torch.from_numpy(frames).permute(3, 0, 1, 2)  # (3, T, H, W)
        left = int(np.argmin(np.abs(ref[0, 0, 0].numpy().astype(int) - int(red[0]))))
        assert torch.equal(out, ref[:, :, :, left : left + 48])


def test_constant_frames_stay_constant():
    frames = np.full((4, 40, 60, 3), 77, np.uint8)
    out = train_transform(frames, (50, 70), 36, True, np.random.default_rng(0))
    assert out.unique().tolist() == [77]


@pytest.mark.parametrize("num_crops", [1, 3, 5])
def test_test_transform_views_are_clip_major(num_crops):
    K, T = 3, 4
    frames = np.zeros((K * T, 48, 64, 3), np.uint8)
    for k in range(K):
        frames[k * T : (k + 1) * T] = 20 * (k + 1)
    out = test_transform(frames, K, 40, 32, num_crops)
    assert out.shape == (K * num_crops, 3, T, 32, 32) and out.dtype == torch.uint8
    for v in range(K * num_crops):
        assert out[v].unique().tolist() == [20 * (v // num_crops + 1)]


def test_test_transform_resizes_short_side_then_crops():
    frames = gradient_frames(T=2, H=48, W=64)
    out = test_transform(frames, 1, 24, 24, 3)  # → 24x32, three 24x24 crops at x = 0, 4, 8
    ref = F.interpolate(
        torch.from_numpy(frames).permute(0, 3, 1, 2).float(),
        size=(24, 32),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    for c, left in enumerate([0, 4, 8]):
        expected = ref[:, :, :, left : left + 24].permute(1, 0, 2, 3)
        assert (out[c].float() - expected).abs().max() <= 2.0  # swscale vs torch bilinear


def test_crop_boxes():
    assert crop_boxes(256, 340, 224, 1) == [(16, 58)]
    assert crop_boxes(256, 340, 224, 3) == [(16, 0), (16, 58), (16, 116)]  # along the long side
    assert crop_boxes(340, 256, 224, 3) == [(0, 16), (58, 16), (116, 16)]
    assert crop_boxes(256, 340, 224, 5) == [(0, 0), (0, 116), (32, 0), (32, 116), (16, 58)]
    with pytest.raises(ValueError, match="one of"):
        crop_boxes(256, 340, 224, 2)
    with pytest.raises(ValueError, match="does not fit"):
        crop_boxes(200, 340, 224, 1)


def test_normalize_official_and_imagenet():
    batch = torch.zeros(2, 3, 4, 5, 5, dtype=torch.uint8)
    batch[:, 0] = 124
    batch[:, 1] = 255
    out = normalize(batch, "official")
    assert out.dtype == torch.float32 and out.shape == batch.shape
    assert torch.allclose(out[:, 0], torch.zeros(()), atol=1e-5)  # the official mean of red
    assert torch.allclose(out[:, 1], torch.tensor((255 - 117) * 0.0167), atol=1e-4)
    assert torch.allclose(out[:, 2], torch.tensor(-104 * 0.0167), atol=1e-4)
    out = normalize(batch, "imagenet")
    assert torch.allclose(out[:, 1], torch.tensor((1 - 0.456) / 0.224), atol=1e-4)
    assert torch.allclose(out[:, 2], torch.tensor(-0.406 / 0.225), atol=1e-4)
    assert set(NORMALIZATIONS) == {"official", "imagenet"}


def test_normalize_multiview_batch_and_errors():
    views = torch.full((2, 6, 3, 4, 8, 8), 124, dtype=torch.uint8)
    out = normalize(views)
    assert out.shape == views.shape
    assert out[:, :, 0].abs().max() < 1e-5 and out[:, :, 1].min() > 0
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize(views, "mxnet")
    with pytest.raises(ValueError, match="expected"):
        normalize(torch.zeros(3, 4, 8, 8, dtype=torch.uint8))


def smooth_video(num_frames=40, height=96, width=128):
    """uint8 (N, H, W, 3): gentle colour gradients and a soft moving blob (like natural video)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        blob = 120 * np.exp(-((x - 30 - 1.5 * t) ** 2 + (y - 40 - 0.5 * t) ** 2) / 288)
        out[t, ..., 0] = np.clip(60 + 0.8 * x + blob, 0, 255)
        out[t, ..., 1] = np.clip(50 + y + 0.5 * blob, 0, 255)
        out[t, ..., 2] = np.clip(150 - 0.5 * x + 0.2 * blob, 0, 255)
    return out


def earlier_box(height, width, scale_range, crop, rng):
    """The crop box of the earlier torch transform, drawn in the same order (reference)."""
    lo, hi = (max(v, crop) for v in scale_range)
    short = int(rng.integers(lo, hi + 1))
    sh, sw = transforms.short_side_size(height, width, short)
    top, left = int(rng.integers(0, sh - crop + 1)), int(rng.integers(0, sw - crop + 1))
    box_h, box_w = min(height, round(crop * height / sh)), min(width, round(crop * width / sw))
    y0 = min(round(top * height / sh), height - box_h)
    x0 = min(round(left * width / sw), width - box_w)
    return (y0, x0, box_h, box_w), bool(rng.random() < 0.5)


@pytest.mark.parametrize("size", [(256, 340), (340, 256), (48, 64), (98, 130)])
def test_train_box_is_the_earlier_box_snapped_to_yuv420(size):
    """Same draws, same box up to snapping: corners even, height % 4 == 0, width even."""
    height, width = size
    crop = min(size) * 7 // 8
    for seed in range(200):
        scale = (min(size), min(size) * 5 // 4)
        box, flip = transforms.train_box(*size, scale, crop, True, np.random.default_rng(seed))
        (y0, x0, h, w), ref_flip = earlier_box(*size, scale, crop, np.random.default_rng(seed))
        assert flip == ref_flip
        assert box.top % 2 == box.left % 2 == box.height % 4 == box.width % 2 == 0
        assert 0 <= box.top and box.top + box.height <= height
        assert 0 <= box.left and box.left + box.width <= width
        assert abs(box.top - y0) <= 2 and abs(box.left - x0) <= 2
        assert abs(box.height - h) <= 2 and abs(box.width - w) <= 1


def test_train_clip_pixels_are_torch_resize_of_the_box():
    """RGB frames: one swscale call equals torch's antialiased bilinear resize of the same box
    up to rounding (1 level); the flip mirrors the columns."""
    frames = smooth_video(4)
    for seed in range(6):
        out = train_transform(frames, (100, 140), 80, True, np.random.default_rng(seed))
        box, flip = transforms.train_box(96, 128, (100, 140), 80, True, np.random.default_rng(seed))
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        x = x[:, :, box.top : box.top + box.height, box.left : box.left + box.width]
        ref = F.interpolate(x, size=(80, 80), mode="bilinear", antialias=True, align_corners=False)
        ref = ref.permute(1, 0, 2, 3)
        ref = ref.flip(-1) if flip else ref
        assert (out.float() - ref).abs().max() <= 1.0


def test_train_items_match_the_earlier_transform(tmp_path):
    """The dataset's item against the earlier reader + torch transform, same (seed, epoch,
    index). Tolerance: mean |difference| <= 3.5 levels on a smooth video: the crop box moves
    by up to 2 px (snapping above) and swscale resizes chroma at half resolution (the earlier
    path upsampled it to full resolution first); the pixels of one box agree within 1 level."""
    from benchmarks.loading.baselines import TodayClipDataset
    from data_prep.codec import write_video
    from data_prep.lists import VideoRecord
    from videoglore.data.dataset import VideoClipDataset

    path = tmp_path / "smooth.mp4"
    write_video(path, smooth_video(), keyframe_interval=4, crf=10)
    records = [VideoRecord(str(path), 0, "a", 40, 25.0, 128, 96)]
    for reader in ("pyav", "decord"):
        ours = VideoClipDataset(records, "train", 4, 3, 64, (96, 128), seed=1, reader=reader)
        earlier = TodayClipDataset(records, "train", 4, 3, 64, (96, 128), seed=1, reader=reader)
        for epoch in range(6):
            a, b = ours[(0, epoch)][0], earlier[(0, epoch)][0]
            assert a.shape == b.shape == (3, 4, 64, 64) and a.dtype == b.dtype == torch.uint8
            assert (a.float() - b.float()).abs().mean() <= 3.5


def test_yuv420_pad_boxes_each_frame_size_once(monkeypatch):
    """A 260k-video list has a handful of frame sizes: the box is worked out once per size."""
    boxes = []
    source_box = transforms.source_box
    monkeypatch.setattr(
        transforms, "source_box", lambda *args: boxes.append(args[:2]) or source_box(*args)
    )
    sizes = [(256, 340, 0)] * 1000 + [(340, 256, 0)] * 1000 + [(256, 454, 0)]
    assert transforms.yuv420_pad(sizes, 256, 224) == 224
    assert sorted(boxes) == [(256, 340), (256, 454), (340, 256)]
    assert transforms.yuv420_pad([(180, 320, 0)] * 3, 256, 224) == 160  # 224 * 180 / 256 = 157.5


@pytest.fixture(scope="module")
def smooth_path(tmp_path_factory):
    from data_prep.codec import write_video

    path = tmp_path_factory.mktemp("smooth") / "smooth.mp4"
    write_video(path, smooth_video(), keyframe_interval=4, crf=10)
    return path


def earlier_centre_views(path, reader, scale, crop, T, tau, K):
    """The earlier one-crop views: every needed frame scaled whole, then the centre cut out."""
    from videoglore.data import pixels, video
    from videoglore.data.sampling import sample_test_clips

    out = np.zeros((K, 3, T, crop, crop), np.uint8)

    def put(frame, slots):
        scaled_size = transforms.short_side_size(*pixels.frame_size(frame), max(scale, crop))
        scaled = pixels.scale_frame(frame, *scaled_size)
        (top, left), *_ = crop_boxes(*scaled_size, crop, 1)
        for slot in slots:
            k, t = divmod(slot, T)
            out[k, :, t] = scaled[:, top : top + crop, left : left + crop]

    video.decode_clip(path, lambda n: sample_test_clips(n, T, tau, K), put, reader)
    return torch.from_numpy(out)


@pytest.mark.parametrize("reader", ["pyav", "decord"])
@pytest.mark.parametrize("scale", [96, 80])
def test_one_crop_views_convert_only_the_centre_box(smooth_path, monkeypatch, reader, scale):
    """rgb with one crop (val, 1-crop test): swscale turns the centre box straight into the
    S×S view, never the whole frame, and the views match the earlier output (whole frame
    scaled, then cropped): equal when nothing is resized (short side 96 = scale, as prepared
    videos at test_scale 256), else up to the box snapping by <= 2 px (mean <= 2 levels, 99 %
    within 8, on a smooth video; measured 1.5 and 8)."""
    from data_prep.lists import VideoRecord
    from videoglore.data import pixels
    from videoglore.data.dataset import VideoClipDataset

    K, T, tau, crop = 2, 4, 3, 64
    earlier = earlier_centre_views(smooth_path, reader, scale, crop, T, tau, K)
    records = [VideoRecord(str(smooth_path), 0, "a", 40, 25.0, 128, 96)]
    args = dict(test_scale=scale, num_clips=K, num_crops=1, reader=reader)
    test = VideoClipDataset(records, "test", T, tau, crop, **args)
    val = VideoClipDataset(records, "val", T, tau, crop, **args)
    sizes = []
    reformat = pixels.reformat
    record_size = lambda frame, **kw: sizes.append(kw.get("width")) or reformat(frame, **kw)  # noqa: E731
    monkeypatch.setattr(pixels, "reformat", record_size)
    views = test[0][0]
    assert views.shape == (K, 3, T, crop, crop)
    assert set(sizes) == {crop}  # one swscale call per frame, to the view's size
    diff = (views.float() - earlier.float()).abs()
    if scale == 96:
        assert diff.max() == 0
    assert diff.mean() <= 2 and diff.flatten().quantile(0.99) <= 8
    clip = val[0][0]  # the centre clip of the same rule, K = 1
    centre = VideoClipDataset(records, "test", T, tau, crop, **(args | {"num_clips": 1}))[0][0]
    assert torch.equal(clip, centre[0])


def test_yuv420_views_box_each_crop_once_per_video(smooth_path, monkeypatch):
    """The crop boxes are fixed per video: worked out on the first frame, not per frame."""
    from data_prep.lists import VideoRecord
    from videoglore.data.dataset import VideoClipDataset

    records = [VideoRecord(str(smooth_path), 0, "a", 40, 25.0, 128, 96)]
    ds = VideoClipDataset(records, "test", 4, 3, 64, test_scale=80, num_clips=2, output="yuv420")
    boxes = []
    source_box = transforms.source_box
    monkeypatch.setattr(
        transforms, "source_box", lambda *args: boxes.append(args) or source_box(*args)
    )
    views = ds[0][0]
    assert views.planes.shape[:2] == (6, 4) and len(boxes) == 3


def _uniform_yuv420(height: int, width: int, yuv=(100, 140, 90)):
    import av

    y, u, v = yuv
    buffer = np.empty(height * width * 3 // 2, np.uint8)
    buffer[: height * width], buffer[height * width : height * width * 5 // 4] = y, u
    buffer[height * width * 5 // 4 :] = v
    return av.VideoFrame.from_numpy_buffer(buffer.reshape(-1, width), format="yuv420p")


@pytest.mark.parametrize("flip", [False, True])
def test_unscaled_yuv420_conversion_is_right_at_every_width(flip):
    """swscale's unscaled YUV420 → planar GBR path (libswscale 9.5, PyAV 18.1) wrote garbage
    into the last ``width % 16`` columns for widths with ``width % 16`` in 2..8 (342, 454, 456:
    the right-hand test crop of prepared Kinetics videos at test_scale = short side). A uniform
    frame must stay uniform, equal to the BT.601 limited-range conversion of its colour (within
    swscale's fixed-point rounding: 2 levels)."""
    from videoglore.data import pixels

    y, u, v = 100.0 - 16, 140.0 - 128, 90.0 - 128  # limited range, centred chroma
    expected = np.clip(
        np.round(
            [
                1.164 * y + 1.596 * v,
                1.164 * y - 0.392 * u - 0.813 * v,
                1.164 * y + 2.017 * u,
            ]
        ),
        0,
        255,
    )
    for width in range(16, 68, 2):
        frame = _uniform_yuv420(24, width)
        for box in (None, pixels.Box(0, 0, 24, width), pixels.Box(4, 2, 16, width - 4)):
            h, w = (24, width) if box is None else box[2:]
            dst = np.zeros((3, h, w), np.uint8)
            pixels.scale_into(frame, box, dst, flip=flip)
            diff = np.abs(dst.astype(int) - expected[:, None, None])
            assert diff.max() <= 2, (width, box, np.argwhere(diff > 2)[:3].tolist())


@pytest.mark.parametrize("reader", ["pyav", "decord"])
def test_every_test_crop_of_an_unscaled_video_is_right(tmp_path, reader):
    """The 3-crop test views of a video whose short side is the test scale (no resize): the
    right crop's last columns are the video's, not garbage (40 % 16 = 8)."""
    from data_prep.codec import write_video
    from data_prep.lists import VideoRecord
    from videoglore.data.dataset import VideoClipDataset

    path = tmp_path / "grey.mp4"
    write_video(path, np.full((8, 32, 40, 3), 128, np.uint8))
    records = [VideoRecord(str(path), 0, "a", 8, 25.0, 40, 32)]
    args = dict(test_scale=32, num_clips=1, num_crops=3, reader=reader)
    views = VideoClipDataset(records, "test", 2, 1, 24, **args)[0][0]  # (3, 3, 2, 24, 24)
    assert views.shape == (3, 3, 2, 24, 24)
    assert (views.int() - 128).abs().amax(dim=(1, 2, 3, 4)).tolist() == [0, 0, 0]
