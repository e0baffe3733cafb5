"""The task hooks the command line uses instead of branching on task names: options, checks of
an --init checkpoint, pre-training metadata and what a checkpoint records."""

from __future__ import annotations

import re

import pytest

from rcl.models import ModelConfig
from rcl.tasks import TASKS, DenoiseTask, JDDTask, SRTask, get_task, pretraining_task, task_from_metadata

PACKED = JDDTask("GRBG").pretraining_metadata()
SR4 = {"task": "sr", "scale": 4, "skip": True}
JDD = {"task": "jdd", "pattern": "RGGB", "skip": "malvar"}


def test_from_options_takes_only_the_task_own_options():
    assert SRTask.from_options(scale=4, pattern=None) == SRTask(4)
    assert JDDTask.from_options(scale=None, pattern="bggr") == JDDTask("BGGR")
    assert DenoiseTask.from_options(scale=None, pattern=None) == DenoiseTask()
    assert JDDTask.from_options() == JDDTask()  # an absent option takes the constructor's default
    assert SRTask.from_options(scale=None) == SRTask()
    # an option given for a task that does not take it is refused, even a valid value
    with pytest.raises(ValueError, match="--pattern applies to --task jdd only"):
        DenoiseTask.from_options(pattern="RGGB")
    with pytest.raises(ValueError, match="--scale applies to --task sr only"):
        JDDTask.from_options(scale=4)
    with pytest.raises(ValueError, match="--pattern applies to --task jdd only"):
        SRTask.from_options(scale=2, pattern="xxxx")
    with pytest.raises(ValueError, match="--scale must be 2, 3, 4 or 8, got 5"):
        SRTask.from_options(scale=5)
    with pytest.raises(ValueError, match="Bayer pattern"):
        JDDTask.from_options(pattern="XXXX")


def test_pretraining_metadata_round_trips():
    assert PACKED == {"data": "packed-bayer", "pattern": "GRBG"}
    assert pretraining_task(PACKED) == JDDTask("GRBG")
    assert [cls.name for cls in TASKS.values() if cls.from_options().pretraining_metadata()] == ["jdd"]
    assert pretraining_task({}) is None and pretraining_task(SR4) is None and pretraining_task(JDD) is None


@pytest.mark.parametrize("task, meta, error", [
    (DenoiseTask(), {}, None),
    (DenoiseTask(), PACKED, "fine-tune it with --task jdd"),
    (DenoiseTask(), SR4, "a sr checkpoint cannot initialise a --task denoise"),
    (DenoiseTask(), JDD, "a jdd checkpoint cannot initialise"),
    (SRTask(4), {}, None),
    (SRTask(4), SR4, None),
    (SRTask(2), SR4, "an SR ×4 checkpoint, not ×2"),
    (SRTask(4), JDD, "a jdd checkpoint cannot initialise a --task sr"),
    (SRTask(4), PACKED, "fine-tune it with --task jdd"),
    (JDDTask("GRBG"), PACKED, None),
    (JDDTask("RGGB"), PACKED, "pre-trained on GRBG mosaics, not --pattern RGGB"),
    (JDDTask("RGGB"), JDD, None),
    (JDDTask("BGGR"), JDD, "a JDD RGGB checkpoint, not --pattern BGGR"),
    (JDDTask(), {}, "starts from a checkpoint pre-trained with `rcl pretrain --task jdd`"),
    (JDDTask(), SR4, "a sr checkpoint cannot initialise a --task jdd"),
])
def test_check_init(task, meta, error):
    if error is None:
        task.check_init(meta)
    else:
        with pytest.raises(ValueError, match=re.escape(error)):
            task.check_init(meta)


def test_checkpoint_metadata_reads_back_and_keeps_the_old_fields():
    body = ModelConfig(width=4, depth=1)
    assert DenoiseTask().checkpoint_metadata(DenoiseTask().build_model(body)) == {}
    sr = SRTask(3)
    assert sr.checkpoint_metadata(sr.build_model(body)) == {"task": "sr", "scale": 3, "skip": True}
    jdd = JDDTask("gbrg")
    body4 = ModelConfig(width=4, depth=1, in_channels=4, out_channels=4)
    meta = jdd.checkpoint_metadata(jdd.build_model(body4))
    assert meta == {"task": "jdd", "pattern": "GBRG", "skip": "malvar"}
    for task, net_body in ((DenoiseTask(), body), (sr, body), (jdd, body4)):
        assert task_from_metadata(task.checkpoint_metadata(task.build_model(net_body))) == task


def test_crop_tile_and_channel_hooks():
    SRTask(4).check_crop_size(32)
    with pytest.raises(ValueError, match="multiple of --scale 4"):
        SRTask(4).check_crop_size(18)
    with pytest.raises(ValueError, match="must be even"):
        JDDTask().check_crop_size(17)
    with pytest.raises(ValueError, match="--tile must be even"):
        JDDTask().check_tile(33)
    SRTask(2).check_tile(33)
    assert JDDTask().body_channels(3) == 4 and JDDTask().output_channels(4) == 3
    with pytest.raises(ValueError, match="RGB"):
        JDDTask().body_channels(1)
    assert get_task("sr").body_channels(1) == 1 and get_task("denoise").output_channels(3) == 3
