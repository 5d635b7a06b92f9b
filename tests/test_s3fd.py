"""The built-in S3FD (families/wav2lip/s3fd.py) against a re-implementation of the reference
detector (Wav2Lip's ``face_detection``: ``s3fd`` network, ``batch_detect``, ``nms``,
``detect_from_batch``, ``get_detections_for_batch``) on seeded weights in the ``s3fd.pth`` layout."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unetprune.data.aligned import DataError
from unetprune.families.wav2lip.faces import load_detector
from unetprune.families.wav2lip.s3fd import S3FDDetector, S3FDNet, load_s3fd


class RefL2Norm(nn.Module):
    def __init__(self, n, scale):
        super().__init__()
        self.weight = nn.Parameter(torch.full((n,), float(scale)))

    def forward(self, x):
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) * self.weight.view(1, -1, 1, 1)


class RefS3FD(nn.Module):
    """The reference network written out layer by layer."""

    def __init__(self):
        super().__init__()
        c = nn.Conv2d
        self.conv1_1, self.conv1_2 = c(3, 64, 3, 1, 1), c(64, 64, 3, 1, 1)
        self.conv2_1, self.conv2_2 = c(64, 128, 3, 1, 1), c(128, 128, 3, 1, 1)
        self.conv3_1, self.conv3_2, self.conv3_3 = (
            c(128, 256, 3, 1, 1),
            c(256, 256, 3, 1, 1),
            c(256, 256, 3, 1, 1),
        )
        self.conv4_1, self.conv4_2, self.conv4_3 = (
            c(256, 512, 3, 1, 1),
            c(512, 512, 3, 1, 1),
            c(512, 512, 3, 1, 1),
        )
        self.conv5_1, self.conv5_2, self.conv5_3 = (
            c(512, 512, 3, 1, 1),
            c(512, 512, 3, 1, 1),
            c(512, 512, 3, 1, 1),
        )
        self.fc6, self.fc7 = c(512, 1024, 3, 1, 3), c(1024, 1024, 1, 1, 0)
        self.conv6_1, self.conv6_2 = c(1024, 256, 1, 1, 0), c(256, 512, 3, 2, 1)
        self.conv7_1, self.conv7_2 = c(512, 128, 1, 1, 0), c(128, 256, 3, 2, 1)
        self.conv3_3_norm, self.conv4_3_norm, self.conv5_3_norm = (
            RefL2Norm(256, 10),
            RefL2Norm(512, 8),
            RefL2Norm(512, 5),
        )
        self.conv3_3_norm_mbox_conf, self.conv3_3_norm_mbox_loc = c(256, 4, 3, 1, 1), c(256, 4, 3, 1, 1)
        self.conv4_3_norm_mbox_conf, self.conv4_3_norm_mbox_loc = c(512, 2, 3, 1, 1), c(512, 4, 3, 1, 1)
        self.conv5_3_norm_mbox_conf, self.conv5_3_norm_mbox_loc = c(512, 2, 3, 1, 1), c(512, 4, 3, 1, 1)
        self.fc7_mbox_conf, self.fc7_mbox_loc = c(1024, 2, 3, 1, 1), c(1024, 4, 3, 1, 1)
        self.conv6_2_mbox_conf, self.conv6_2_mbox_loc = c(512, 2, 3, 1, 1), c(512, 4, 3, 1, 1)
        self.conv7_2_mbox_conf, self.conv7_2_mbox_loc = c(256, 2, 3, 1, 1), c(256, 4, 3, 1, 1)

    def forward(self, x):
        r, p = F.relu, lambda t: F.max_pool2d(t, 2, 2)
        h = p(r(self.conv1_2(r(self.conv1_1(x)))))
        h = p(r(self.conv2_2(r(self.conv2_1(h)))))
        f3 = r(self.conv3_3(r(self.conv3_2(r(self.conv3_1(h))))))
        f4 = r(self.conv4_3(r(self.conv4_2(r(self.conv4_1(p(f3)))))))
        f5 = r(self.conv5_3(r(self.conv5_2(r(self.conv5_1(p(f4)))))))
        f7 = r(self.fc7(r(self.fc6(p(f5)))))
        f62 = r(self.conv6_2(r(self.conv6_1(f7))))
        f72 = r(self.conv7_2(r(self.conv7_1(f62))))
        f3, f4, f5 = self.conv3_3_norm(f3), self.conv4_3_norm(f4), self.conv5_3_norm(f5)
        cls1 = self.conv3_3_norm_mbox_conf(f3)
        ch = torch.chunk(cls1, 4, 1)
        cls1 = torch.cat([torch.max(torch.max(ch[0], ch[1]), ch[2]), ch[3]], dim=1)
        return [
            cls1,
            self.conv3_3_norm_mbox_loc(f3),
            self.conv4_3_norm_mbox_conf(f4),
            self.conv4_3_norm_mbox_loc(f4),
            self.conv5_3_norm_mbox_conf(f5),
            self.conv5_3_norm_mbox_loc(f5),
            self.fc7_mbox_conf(f7),
            self.fc7_mbox_loc(f7),
            self.conv6_2_mbox_conf(f62),
            self.conv6_2_mbox_loc(f62),
            self.conv7_2_mbox_conf(f72),
            self.conv7_2_mbox_loc(f72),
        ]


def ref_nms(dets, thresh):
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        w, h = np.maximum(0.0, xx2 - xx1 + 1), np.maximum(0.0, yy2 - yy1 + 1)
        ovr = w * h / (areas[i] + areas[order[1:]] - w * h)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def ref_detections(net, frames_bgr):
    """get_detections_for_batch(BGR frames): RGB, batch_detect, nms 0.3, > 0.5, first box."""
    imgs = frames_bgr[..., ::-1].copy() - np.array([104, 117, 123])
    x = torch.from_numpy(imgs.transpose(0, 3, 1, 2)).float()
    with torch.no_grad():
        olist = net(x)
    for i in range(len(olist) // 2):
        olist[i * 2] = F.softmax(olist[i * 2], dim=1)
    bb = []
    for i in range(len(olist) // 2):
        ocls, oreg = olist[i * 2], olist[i * 2 + 1]
        stride = 2 ** (i + 2)
        for _, hi, wi in zip(*np.where(ocls[:, 1, :, :] > 0.05)):
            axc, ayc = stride / 2 + wi * stride, stride / 2 + hi * stride
            score = ocls[:, 1, hi, wi]
            loc = oreg[:, :, hi, wi].contiguous().view(-1, 4)
            pri = torch.Tensor([[axc / 1.0, ayc / 1.0, stride * 4 / 1.0, stride * 4 / 1.0]])
            boxes = torch.cat(
                (pri[:, :2] + loc[:, :2] * 0.1 * pri[:, 2:], pri[:, 2:] * torch.exp(loc[:, 2:] * 0.2)), 1
            )
            boxes[:, :2] -= boxes[:, 2:] / 2
            boxes[:, 2:] += boxes[:, :2]
            bb.append(torch.cat([boxes, score.unsqueeze(1)], 1).numpy())
    bb = np.array(bb) if bb else np.zeros((1, len(frames_bgr), 5))
    out = []
    for n in range(bb.shape[1]):
        d = bb[ref_nms(bb[:, n, :], 0.3), n, :]
        d = [b for b in d if b[-1] > 0.5]
        if not d:
            out.append(None)
            continue
        x1, y1, x2, y2 = map(int, np.clip(d[0], 0, None)[:-1])
        out.append((x1, y1, x2, y2))
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded state dict in the s3fd.pth layout; small weights keep the face scores near 0.5, so
    the 0.05 and 0.5 thresholds both select."""
    g = torch.Generator().manual_seed(0)
    ref = RefS3FD()
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if name.endswith("norm.weight"):
                continue  # the reference's initial scales 10, 8, 5
            fan = t[0].numel() if t.dim() > 1 else 1
            t.copy_(
                torch.randn(t.shape, generator=g) * (1.0 / fan) ** 0.5 * (0.02 if "mbox" in name else 1.0)
            )
    path = tmp_path_factory.mktemp("s3fd") / "s3fd.pth"
    torch.save(ref.state_dict(), path)
    return path, ref.eval()


def test_layout_and_forward_equal_the_reference(weights):
    path, ref = weights
    ours = load_s3fd(path)
    assert set(ours.state_dict()) == set(ref.state_dict())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters()) == 22_459_110
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1)) * 50
    with torch.no_grad():
        flat = [t for pair in ours(x) for t in pair]
        want = ref(x)
    assert len(flat) == len(want) == 12
    assert all(torch.equal(a, b) for a, b in zip(flat, want))


def test_boxes_equal_the_reference_detector(weights):
    path, ref = weights
    rng = np.random.default_rng(0)
    frames_rgb = rng.integers(0, 256, (3, 96, 128, 3), dtype=np.uint8)
    frames_rgb[1] = 128  # a flat frame
    want = ref_detections(ref, frames_rgb[..., ::-1].copy())
    det = load_detector("s3fd", str(path))
    assert isinstance(det, S3FDDetector) and det.name == "s3fd"
    got = det.detect(frames_rgb)
    assert got == want
    assert any(b is not None for b in got)  # the thresholds selected something: not a vacuous match
    det.batch_size = 1
    assert det.detect(frames_rgb) == want


def test_wrong_weights_are_one_line_errors(tmp_path, weights):
    with pytest.raises(DataError, match="needs --detector-weights"):
        load_detector("s3fd")
    bad = tmp_path / "bad.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(DataError, match=r"bad.pth is not an S3FD state dict \(s3fd.pth\): \d+ keys missing"):
        load_s3fd(bad)
    torch.save(S3FDNet, tmp_path / "code.pth")  # a pickled class: refused by weights_only
    with pytest.raises(DataError, match="code.pth is not an S3FD state dict") as e:
        load_s3fd(tmp_path / "code.pth")
    assert "\n" not in str(e.value)
