"""Mesh sizes from config: -1 resolution and one-line errors (no devices needed)."""

import jax
import pytest

from rewardjax import parallel


@pytest.mark.parametrize(
    "sizes, devices, expected",
    [
        ((-1, 1, 1), 8, (8, 1, 1)),
        ((2, -1, 1), 8, (2, 4, 1)),
        ((1, 4, -1), 8, (1, 4, 2)),
        ((2, 2, 2), 8, (2, 2, 2)),
        ((-1, 64, 1), 256, (4, 64, 1)),
        ((1, 1, 1), 1, (1, 1, 1)),
    ],
)
def test_resolve_mesh_shape(sizes, devices, expected):
    assert parallel.resolve_mesh_shape(sizes, devices) == expected


@pytest.mark.parametrize(
    "sizes, devices, words",
    [
        # 2·2·3 = 12 ≠ 8
        ((2, 2, 3), 8, ["data=2, fsdp=2, tensor=3", "12 devices", "8 devices"]),
        # fixed 3 does not divide 8
        ((-1, 3, 1), 8, ["multiply to 3", "8 devices"]),
        ((-1, -1, 1), 8, ["at most one axis"]),
        ((0, 1, 1), 8, ["positive or -1"]),
        ((2, 2), 4, ["one size per axis"]),
    ],
)
def test_resolve_mesh_shape_errors_name_sizes_and_devices(sizes, devices, words):
    with pytest.raises(ValueError) as err:
        parallel.resolve_mesh_shape(sizes, devices)
    for word in words:
        assert word in str(err.value)


def test_make_mesh_on_the_single_test_device():
    mesh = parallel.make_mesh()
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    with pytest.raises(ValueError, match="multiplies to 2 devices but 1 devices"):
        parallel.make_mesh(data=2)


def test_mesh_from_config_rejects_unknown_and_missing_keys():
    mesh = parallel.mesh_from_config({"data": -1, "fsdp": 1, "tensor": 1})
    assert mesh.devices.size == 1
    with pytest.raises(ValueError, match=r"unknown: fsdpp.*missing: fsdp"):
        parallel.mesh_from_config({"data": -1, "fsdpp": 1, "tensor": 1})


def test_parse_mesh():
    assert parallel.parse_mesh("1,64,1") == (1, 64, 1)
    assert parallel.parse_mesh(" -1, 2 ,2") == (-1, 2, 2)
    for bad in ("1,64", "a,b,c", "1,2,3,4"):
        with pytest.raises(ValueError, match="data,fsdp,tensor"):
            parallel.parse_mesh(bad)


def test_split_mesh_sizes_must_cover_the_axis():
    mesh = parallel.make_mesh()
    assert parallel.split_mesh(mesh, {"policy": 1})["policy"].devices.size == 1
    with pytest.raises(ValueError, match="sum to 2, not the data size 1"):
        parallel.split_mesh(mesh, {"policy": 1, "reward": 1})
    with pytest.raises(ValueError, match="no axis 'model'"):
        parallel.split_mesh(mesh, {"policy": 1}, axis="model")
