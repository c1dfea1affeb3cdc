"""Model initialisation from a private generator: same weights as global seeding, global RNG untouched."""
import threading

import torch

from pruning.config import RunConfig
from pruning.models import MODELS, build_model
from pruning.seeding import private_rng


def test_build_model_leaves_the_global_rng_alone_and_matches_global_seeding():
    config = RunConfig(model="small_cnn", seed=3)
    torch.manual_seed(99)
    state = torch.get_rng_state()
    model = build_model(config, 1, 10, 8)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn from or reseeded
    torch.manual_seed(3)  # the scheme it replaces: weights are identical
    reference = MODELS.get("small_cnn")(1, 10, 8, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 reference.state_dict().values()))


def test_private_rng_is_per_thread():
    inside = threading.Event()
    release = threading.Event()
    drawn = {}

    def seeded():
        with private_rng(torch.Generator().manual_seed(0)):
            inside.set()
            release.wait()
            drawn["seeded"] = torch.rand(3)

    thread = threading.Thread(target=seeded)
    thread.start()
    inside.wait()
    torch.manual_seed(1)
    drawn["other"] = torch.rand(3)  # this thread still draws from the global RNG
    release.set()
    thread.join()
    assert torch.equal(drawn["other"], torch.rand(3, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(drawn["seeded"], torch.rand(3, generator=torch.Generator().manual_seed(0)))
