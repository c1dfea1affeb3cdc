"""Registered model architectures (``MODELS``), built for a dataset's channels, size and classes.

Each entry is a factory ``factory(in_channels, num_classes, image_size, width) -> nn.Module``
registered with ``register_model``, which also records the smallest input the architecture
takes (every stride-2 step must still see at least one pixel). ``check_compatible`` refuses a
model/input pair below that with a message naming the fix, before anything is written.

Every model registers its modules in data-flow order (stem first, classifier last), because
``masks.prunable_layers`` takes "first" and "last" layer in registration order.

- ``mlp``: LeNet-300-100; ``lenet5``: LeNet-5 (LeCun et al. 1998).
- ``small_cnn``: conv-BN-ReLU stack, the fast default for digits.
- ``vgg11``, ``vgg16``: CIFAR-style VGG with BatchNorm (Simonyan & Zisserman 2015).
- ``resnet20``, ``resnet56``: CIFAR ResNets (He et al. 2016).
- ``resnet18``, ``mobilenet_v2``: torchvision's models (He et al. 2016; Sandler et al. 2018)
  adapted to 8-32 px inputs.
"""
from pruning.models.base import (  # noqa: F401
    MODELS, Factory, build_model, check_compatible, register_model, scaled)

# Registration happens on import; order here is the order users see.
from pruning.models import (  # noqa: E402,F401
    small_cnn, mlp, lenet5, vgg, resnet_cifar, torchvision_models)
