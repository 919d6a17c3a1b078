import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.nn import ChebConv, GCNConv
from torch_geometric.utils import to_networkx

from igraphflow.graph import _SUPPORTS, check_edge_index, hop_supports, symmetric_edges
from igraphflow.nn import GraphVelocityField, HopMeans, L3NetConv, StaticChebConv, StaticGCNConv, make_conv
from igraphflow.nn import l3net
from igraphflow import ConditionalGraphFlow

pytestmark = pytest.mark.usefixtures("float64")


@pytest.fixture
def graph():
    g = nx.connected_watts_strogatz_graph(9, 4, 0.3, seed=1)
    edges = torch.tensor(list(g.edges)).T
    return torch.cat([edges, edges.flip(0)], dim=1), 9


def _pairs_within(edge_index, n, order):
    r"""The (neighbour, node) pairs at most ``order`` hops apart, from networkx's shortest paths."""
    g = to_networkx(torch_geometric_data(edge_index, n), to_undirected=True)
    dist = dict(nx.all_pairs_shortest_path_length(g))
    return {(j, i) for i in range(n) for j in range(n) if dist[i].get(j, n + 1) <= order}


def test_hop_supports_match_networkx_distances(graph):
    edge_index, n = graph
    for order, support in zip((0, 1, 2, 3), hop_supports(edge_index, n, (0, 1, 2, 3))):
        assert set(map(tuple, support.T.tolist())) == _pairs_within(edge_index, n, order)


def test_hop_supports_follow_the_orders_as_given(graph):
    # One after the other on the same graph: each list of orders gets its own supports, in its order.
    edge_index, n = graph
    for orders in [(0, 1, 2), (2, 0, 1), (1, 1, 0)]:
        supports = hop_supports(edge_index, n, orders)
        assert [set(map(tuple, s.T.tolist())) for s in supports] == [_pairs_within(edge_index, n, m) for m in orders]


def test_the_support_cache_keeps_at_most_eight_graphs():
    # A process that builds models on many graphs would otherwise keep the supports of every one.
    for n in range(2, 14):
        path = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
        hop_supports(path, n, (0, 1))
    assert len(_SUPPORTS) <= 8


def test_the_list_of_supports_is_the_callers_own():
    # The tensors are shared (read-only); the list is a copy, so that changing it leaves the cache.
    path = torch.tensor([[0, 1], [1, 2]])
    hop_supports(path, 3, (0, 1)).pop()
    assert [s.size(1) for s in hop_supports(path, 3, (0, 1))] == [3, 7]


def test_hop_supports_take_a_one_way_edge_list_as_undirected(graph):
    edge_index, n = graph
    one_way = edge_index[:, edge_index[0] < edge_index[1]]  # each edge once, in one direction
    for one, both in zip(hop_supports(one_way, n, (0, 1, 2)), hop_supports(edge_index, n, (0, 1, 2))):
        assert torch.equal(one, both)


def torch_geometric_data(edge_index, n):
    from torch_geometric.data import Data

    return Data(edge_index=edge_index, num_nodes=n)


# Every basis summed sparsely, or every basis as a dense matrix (the default on this 9-node graph).
BASIS_FORMS = pytest.mark.parametrize("dense_fraction", [2.0, 0.0])


@BASIS_FORMS
def test_l3net_matches_dense_reference(graph, dense_fraction, monkeypatch):
    monkeypatch.setattr(l3net, "DENSE_FRACTION", dense_fraction)
    edge_index, n = graph
    conv = L3NetConv(3, 5, edge_index, n, orders=(0, 1, 2))
    for w in conv.filters:
        w.data.normal_()
    conv.bias.data.normal_()  # it starts at zero, where adding and subtracting it agree
    x = torch.randn(4, n, 3)
    # Dense reference: sum_m B_m X W_m with B_m[i, j] the weight of pair (j -> i).
    weights = conv.lin.weight  # aggregate-first: [out, M * in]
    expected = conv.bias.expand(4, n, 5).clone()
    for m, (w, support) in enumerate(zip(conv.filters, conv.supports())):
        B = torch.zeros(n, n)
        B[support[1], support[0]] = w
        expected = expected + (B @ x) @ weights[:, 3 * m : 3 * (m + 1)].T
    assert torch.allclose(conv(x), expected)


def test_hop_means_average_over_networkx_balls(graph):
    edge_index, n = graph
    g = to_networkx(torch_geometric_data(edge_index, n), to_undirected=True)
    dist = dict(nx.all_pairs_shortest_path_length(g))
    x = torch.randn(5, n, 3)
    out = HopMeans(edge_index, n, orders=(0, 1, 3))(x)
    assert out.shape == (5, n, 9)
    for block, order in enumerate((0, 1, 3)):
        for v in range(n):
            ball = [u for u in range(n) if dist[v].get(u, n + 1) <= order]
            assert torch.allclose(out[:, v, 3 * block : 3 * block + 3], x[:, ball].mean(1))


def test_hop_means_of_products_average_each_nodes_pairwise_products(graph):
    edge_index, n = graph
    g = to_networkx(torch_geometric_data(edge_index, n), to_undirected=True)
    dist = dict(nx.all_pairs_shortest_path_length(g))
    x = torch.randn(5, n, 3, dtype=torch.float64)
    means = HopMeans(edge_index, n, orders=(0, 2), products=True)
    out = means(x)
    # Per order: the 3 features, then x0 x0, x0 x1, x0 x2, x1 x1, x1 x2, x2 x2.
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    node = torch.cat([x, torch.stack([x[..., i] * x[..., j] for i, j in pairs], -1)], -1)
    assert out.shape == (5, n, 18)
    for block, order in enumerate((0, 2)):
        for v in range(n):
            ball = [u for u in range(n) if dist[v].get(u, n + 1) <= order]
            torch.testing.assert_close(out[:, v, 9 * block : 9 * block + 9], node[:, ball].mean(1))
    # The plain columns are the hop means of the features alone.
    plain = means.plain_columns(3)
    assert plain.tolist() == ([True] * 3 + [False] * 6) * 2
    torch.testing.assert_close(out[..., plain], HopMeans(edge_index, n, orders=(0, 2))(x))


def test_l3net_reset_makes_it_a_linear_map_of_the_hop_means_without_bias(graph):
    # Each basis starts as the mean over its hop ball, the bias at zero, the linear map drawn afresh.
    edge_index, n = graph
    g = to_networkx(torch_geometric_data(edge_index, n), to_undirected=True)
    dist = dict(nx.all_pairs_shortest_path_length(g))
    torch.manual_seed(0)
    conv = L3NetConv(3, 5, edge_index, n, orders=(0, 1, 2))
    with torch.no_grad():
        for parameter in conv.parameters():
            parameter.fill_(5.0)
    conv.reset_parameters()
    assert not (conv.lin.weight == 5.0).any()
    x = torch.randn(4, n, 3)
    balls = {(v, order): [u for u in range(n) if dist[v][u] <= order] for v in range(n) for order in (0, 1, 2)}
    means = torch.stack([torch.cat([x[:, balls[v, order]].mean(1) for order in (0, 1, 2)], -1) for v in range(n)], dim=1)
    assert torch.allclose(conv(x), means @ conv.lin.weight.T)


@pytest.mark.parametrize("num_nodes", [50, 100])
def test_l3net_applies_the_bases_as_dense_matrices_only_when_they_hold_the_dense_fraction_of_pairs(num_nodes, monkeypatch):
    # Dense bases take M * V^2 entries: on a large sparse graph they would not fit in memory.
    path = torch.tensor(list(nx.path_graph(num_nodes).edges)).T
    dist = dict(nx.all_pairs_shortest_path_length(nx.path_graph(num_nodes)))
    pairs = sum(d <= order for order in (0, 1, 2) for row in dist.values() for d in row.values())
    expected = "dense" if pairs >= l3net.DENSE_FRACTION * 3 * num_nodes**2 else "sparse"
    assert expected == ("dense" if num_nodes == 50 else "sparse")  # the path graphs straddle the threshold
    used = []

    def recorded(form, method):
        apply = getattr(L3NetConv, method)

        def wrapper(self, x):
            used.append(form)
            return apply(self, x)

        return wrapper

    for form, method in (("dense", "forward_channels_first"), ("sparse", "_sparse")):
        monkeypatch.setattr(L3NetConv, method, recorded(form, method))
    torch.manual_seed(0)
    L3NetConv(1, 2, path, num_nodes, orders=(0, 1, 2))(torch.randn(2, num_nodes, 1))
    assert used == [expected]


@BASIS_FORMS
def test_l3net_mix_first_equals_aggregate_first(graph, dense_fraction, monkeypatch):
    monkeypatch.setattr(l3net, "DENSE_FRACTION", dense_fraction)
    edge_index, n = graph
    wide = L3NetConv(6, 2, edge_index, n)  # mixes channels first
    assert not wide.aggregate_first
    x = torch.randn(3, n, 6)
    parts = wide.lin.weight.chunk(3, dim=0)
    expected = sum(
        torch.zeros(3, n, 2).index_add(-2, s[1], w[:, None] * (x @ W.T)[:, s[0]])
        for w, s, W in zip(wide.filters, wide.supports(), parts)
    )
    assert torch.allclose(wide(x), expected + wide.bias)


def test_l3net_dense_and_sparse_bases_have_the_same_derivatives(graph, monkeypatch):
    # Training differentiates a vector-Jacobian product of the field: first and second
    # derivatives must not depend on how a basis is summed.
    edge_index, n = graph
    conv = L3NetConv(3, 4, edge_index, n, orders=(0, 1, 2))
    for w in conv.filters:
        w.data.normal_()
    x, probe = torch.randn(5, n, 3), torch.randn(5, n, 4)

    def derivatives(dense_fraction):
        monkeypatch.setattr(l3net, "DENSE_FRACTION", dense_fraction)
        inputs = x.clone().requires_grad_()
        (vjp,) = torch.autograd.grad(torch.tanh(conv(inputs)), inputs, probe, create_graph=True)
        second = torch.autograd.grad(vjp.square().sum(), [inputs, *conv.filters])
        return [conv(x), vjp.detach(), *second]

    for sparse, dense in zip(derivatives(2.0), derivatives(0.0)):
        torch.testing.assert_close(sparse, dense)


@pytest.mark.parametrize("in_channels, out_channels", [(3, 5), (6, 2)])  # aggregates first, mixes first
@pytest.mark.parametrize("with_constant", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_l3net_channels_first_equals_channels_last(graph, in_channels, out_channels, with_constant, bias, monkeypatch):
    edge_index, n = graph
    conv = L3NetConv(in_channels, out_channels, edge_index, n, orders=(0, 1, 2), bias=bias)
    for parameter in conv.parameters():
        parameter.data.normal_()
    assert conv.dense and conv.aggregate_first == (in_channels <= out_channels)
    x = torch.randn(2, 4, n, in_channels - with_constant, requires_grad=True)
    t = torch.tensor(0.3, requires_grad=True) if with_constant else None
    probe = torch.randn(2, 4, n, out_channels)
    got = conv.forward_channels_first(x.permute(3, 0, 1, 2), constant=t).permute(1, 2, 3, 0)
    # The reference: the layer's sparse sums (its dense bases go through forward_channels_first)
    # on [*, V, C], the constant stored as a channel.
    monkeypatch.setattr(l3net, "DENSE_FRACTION", 2.0)
    expected = conv(torch.cat([x, t.expand(2, 4, n, 1)], -1) if with_constant else x)
    torch.testing.assert_close(got, expected)
    # Training takes first and second derivatives: of the input, the time and every weight.
    inputs = [x, *conv.parameters()] + ([t] if with_constant else [])
    for ours, theirs in zip(torch.autograd.grad(got, inputs, probe), torch.autograd.grad(expected, inputs, probe)):
        torch.testing.assert_close(ours, theirs)
    # A process's empty share of a batch.
    empty = conv.forward_channels_first(torch.randn(in_channels - with_constant, 0, n), constant=t)
    assert empty.shape == (out_channels, 0, n)


def test_l3net_channels_first_names_the_shape_it_expects(graph):
    edge_index, n = graph
    conv = L3NetConv(3, 4, edge_index, n)
    with pytest.raises(ValueError, match=rf"expects \[2, \*, {n}\], got \[3, 5, {n}\]"):
        conv.forward_channels_first(torch.randn(3, 5, n), constant=torch.tensor(0.0))
    with pytest.raises(ValueError, match=rf"expects \[3, \*, {n}\], got \[3, 5, {n + 1}\]"):
        conv.forward_channels_first(torch.randn(3, 5, n + 1))


def test_l3net_batched_equals_one_by_one(graph):
    edge_index, n = graph
    conv = L3NetConv(2, 4, edge_index, n)
    x = torch.randn(5, n, 2)
    assert torch.allclose(conv(x), torch.stack([conv(xi) for xi in x]))


def test_static_cheb_equals_pyg_chebconv(graph):
    edge_index, n = graph
    static = StaticChebConv(3, 4, edge_index, n, K=3)
    reference = ChebConv(3, 4, K=3, normalization="sym")
    reference.load_state_dict(static.state_dict())
    x = torch.randn(n, 3)
    # In float64 (this module's default) to 1e-12: the Laplacian is computed in the weights' dtype.
    torch.testing.assert_close(static(x), reference(x, edge_index, lambda_max=2.0), atol=1e-12, rtol=1e-12)
    assert torch.allclose(static(x.expand(2, n, 3))[1], static(x))
    # The Laplacian is derived from the graph, not saved; states that still hold it load.
    older = static.state_dict() | {"scaled_index": static.scaled_index, "scaled_weight": static.scaled_weight}
    StaticChebConv(3, 4, edge_index, n, K=3).load_state_dict(older)


@pytest.mark.parametrize("conv", ["cheb", "gcn"])
def test_static_layers_take_a_one_way_edge_list_as_undirected(graph, conv):
    # PyG's normalisation reads a one-way list as a directed graph: the degrees of its sources only.
    edge_index, n = graph
    one_way = edge_index[:, edge_index[0] < edge_index[1]]  # each edge once, in one direction
    torch.manual_seed(0)
    static = StaticChebConv(3, 4, one_way, n, K=3) if conv == "cheb" else StaticGCNConv(3, 4, one_way, n)
    reference = ChebConv(3, 4, K=3, normalization="sym") if conv == "cheb" else GCNConv(3, 4)
    reference.load_state_dict(static.state_dict())
    x = torch.randn(2, n, 3)
    expected = reference(x, edge_index, lambda_max=2.0) if conv == "cheb" else reference(x, edge_index)
    torch.testing.assert_close(static(x), expected, atol=1e-12, rtol=1e-12)


def test_l3net_state_holds_no_supports_and_older_states_load(graph):
    edge_index, n = graph
    conv = L3NetConv(2, 3, edge_index, n, orders=(0, 1, 2))
    state = conv.state_dict()
    assert not any(key.startswith("support") for key in state)  # derived from the graph
    older = state | {f"support_{m}": s for m, s in enumerate(conv.supports())}
    other = L3NetConv(2, 3, edge_index, n, orders=(0, 1, 2))
    other.load_state_dict(older)
    x = torch.randn(4, n, 2)
    assert torch.equal(other(x), conv(x))


def test_l3net_filters_start_as_exact_means_in_the_weights_dtype(graph):
    edge_index, n = graph
    torch.set_default_dtype(torch.float32)  # the module's fixture restores the default afterwards
    conv = L3NetConv(2, 3, edge_index, n, orders=(1,)).double()
    conv.reset_parameters()
    counts = torch.bincount(conv.supports()[0][1], minlength=n).double()
    assert torch.equal(conv.filters[0], 1 / counts[conv.supports()[0][1]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_static_gcn_equals_pyg_gcnconv(graph, dtype):
    torch.set_default_dtype(dtype)  # the module's fixture restores the default afterwards
    edge_index, n = graph
    static = StaticGCNConv(3, 4, edge_index, n)
    reference = GCNConv(3, 4)
    reference.load_state_dict(static.state_dict(), strict=False)  # all but the graph
    x = torch.randn(2, n, 3)
    # The same graph, sorted; the normalisation computed in float64 first, so float32 differs by rounding.
    torch.testing.assert_close(static(x), reference(x, static.edge_index), rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)
    assert set(static.state_dict()) == {"bias", "lin.weight"}  # the graph and its normalisation are the layer's own
    # States that still hold the graph (saved before it was left out) load, whatever its size.
    static.load_state_dict(reference.state_dict() | {"edge_index": torch.zeros(2, 1, dtype=torch.long)})


@pytest.mark.parametrize("conv", ["cheb", "gcn"])
def test_a_layer_cast_to_double_gets_the_exact_operator(graph, conv):
    edge_index, n = graph
    torch.set_default_dtype(torch.float32)  # the module's fixture restores the default afterwards
    static = (StaticChebConv(3, 4, edge_index, n, K=3) if conv == "cheb" else StaticGCNConv(3, 4, edge_index, n)).double()
    torch.set_default_dtype(torch.float64)
    x = torch.randn(2, n, 3)
    weights = static.state_dict()
    if conv == "cheb":
        reference = ChebConv(3, 4, K=3, normalization="sym")
        reference.load_state_dict(weights)
        expected = reference(x, edge_index, lambda_max=2.0)
    else:
        reference = GCNConv(3, 4)
        reference.load_state_dict(weights)
        expected = reference(x, edge_index)
    torch.testing.assert_close(static(x), expected, rtol=0, atol=1e-13)


def test_static_gcn_normalisation_follows_the_module(graph):
    # It sat in a plain attribute: .double() kept it float32 and another device found it on the CPU.
    edge_index, n = graph
    conv = StaticGCNConv(3, 4, edge_index, n).float()
    conv(torch.randn(2, n, 3, dtype=torch.float32))
    conv.to(torch.float64)
    assert conv.norm_weight.dtype == torch.float64 and conv(torch.randn(2, n, 3, dtype=torch.float64)).dtype == torch.float64
    conv.to("meta")
    assert {conv.norm_index.device.type, conv.norm_weight.device.type} == {"meta"}
    assert conv(torch.randn(2, n, 3, device="meta")).shape == (2, n, 4)


def test_velocity_field_starts_small_and_takes_time(graph):
    edge_index, n = graph
    f = GraphVelocityField(edge_index, n, 2, hidden=16)
    x = torch.randn(8, n, 2)
    assert f(torch.tensor(0.0), x).abs().mean() < 0.5 * x.abs().mean()
    assert not torch.allclose(f(torch.tensor(0.0), x), f(torch.tensor(1.0), x))


@pytest.mark.parametrize("num_nodes", [9, 300])  # dense bases, run channels first; sparse bases
def test_velocity_field_is_its_layers_composed(num_nodes, monkeypatch):
    # On a small graph the field runs channels first with the time as a bias; the reference
    # stores the time as a channel and calls each layer on [N, V, C], with sparse sums.
    g = nx.connected_watts_strogatz_graph(num_nodes, 4, 0.3, seed=1)
    edges = torch.tensor(list(g.edges)).T
    edge_index = torch.cat([edges, edges.flip(0)], dim=1)
    torch.manual_seed(0)
    f = GraphVelocityField(edge_index, num_nodes, 2, hidden=8)
    assert f.channels_first == (num_nodes == 9)
    for parameter in f.parameters():
        parameter.data.normal_(0, 0.5)
    x, t = torch.randn(5, num_nodes, 2, requires_grad=True), torch.tensor(0.7)

    def with_time(h):
        return torch.cat([h, t.expand(*h.shape[:-1], 1)], -1)

    got = f(t, x)
    monkeypatch.setattr(l3net, "DENSE_FRACTION", 2.0)  # the layers' sparse sums, not channels first
    h = torch.nn.functional.silu(f.conv_in(with_time(x)))
    h = torch.nn.functional.silu(f.node_hidden(with_time(h)))
    expected = f.conv_out(with_time(h))
    torch.testing.assert_close(got, expected)
    probe = torch.randn_like(got)
    inputs = [x, *f.parameters()]
    for ours, theirs in zip(torch.autograd.grad(got, inputs, probe), torch.autograd.grad(expected, inputs, probe)):
        torch.testing.assert_close(ours, theirs)
    assert f(t, x[:0]).shape == (0, num_nodes, 2)  # a process's empty share of a batch
    # Any leading dimensions, as the layers take them.
    torch.testing.assert_close(f(t, x[0]), expected[0])
    torch.testing.assert_close(f(t, x.view(5, 1, num_nodes, 2)), expected.view(5, 1, num_nodes, 2))


@pytest.mark.parametrize("conv", ["cheb", "gcn"])
def test_velocity_field_starts_with_a_tenth_of_its_output_layers_weights_and_time_in_every_layer(conv):
    # The parts built again in the same order from the same seed: the output layer's weights a tenth of theirs.
    edge_index, n = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 3
    torch.manual_seed(0)
    f = GraphVelocityField(edge_index, n, 2, hidden=8, conv=conv)
    torch.manual_seed(0)
    make_conv(conv, 3, 8, edge_index, n, (0, 1, 2)), torch.nn.Linear(9, 8)  # conv_in and node_hidden: their draws
    reference = make_conv(conv, 9, 2, edge_index, n, (0, 1, 2))
    for (name, ours), theirs in zip(f.conv_out.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours, 0.1 * theirs, msg=name)
    seen = []
    f.conv_in.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0][..., -1]))
    f(torch.tensor(0.7), torch.randn(4, n, 2))
    assert torch.equal(seen[0], torch.full((4, n), 0.7))


@pytest.mark.parametrize("conv, radius", [("l3net", 2), ("cheb", 2), ("gcn", 1)])
def test_velocity_field_reaches_twice_the_hop_radius(conv, radius):
    # Two convolutions: node v's velocity depends on the nodes within 2 * radius hops, no further.
    path = torch.stack([torch.arange(7), torch.arange(1, 8)])
    path = torch.cat([path, path.flip(0)], dim=1)
    torch.manual_seed(0)
    field = GraphVelocityField(path, 8, 1, hidden=8, conv=conv, orders=(0, 1, 2)).double()
    for parameter in field.parameters():
        parameter.data.normal_(0, 0.5)
    x = torch.randn(1, 8, 1, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda z: field(torch.tensor(0.3), z).flatten(), x).reshape(8, 8)
    hops = (torch.arange(8)[:, None] - torch.arange(8)[None, :]).abs()
    assert (J[hops > 2 * radius] == 0).all()
    assert (J[hops == 2 * radius].abs() > 1e-8).all()


def test_bad_graphs_and_names():
    with pytest.raises(ValueError, match="outside"):
        check_edge_index(torch.tensor([[0, 5], [1, 0]]), 3)
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):  # the first index past the end
        check_edge_index(torch.tensor([[0, 3], [1, 0]]), 3)
    with pytest.raises(ValueError, match=r"\[2, E\]"):
        check_edge_index(torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="integers"):
        check_edge_index(torch.tensor([[0.0], [1.0]]), 3)
    # One row per edge, and a networkx graph (which NumPy reads as its list of nodes): named.
    with pytest.raises(ValueError, match=r"got \[3, 2\] \(one row per edge: pass its transpose\)"):
        check_edge_index(torch.tensor([[0, 1], [1, 2], [2, 0]]), 3)
    with pytest.raises(ValueError, match="got a networkx graph"):
        check_edge_index(nx.path_graph(3), 3)
    with pytest.raises(ValueError, match="conv must be one of"):
        make_conv("gat", 2, 2, torch.tensor([[0], [1]]), 2, (0, 1))


@pytest.mark.parametrize(
    "edges, message",
    [
        (torch.tensor([[0, -1], [1, 0]]), r"\[-1, 1\], outside \[0, 3\)"),  # a negative index is no node either
        (torch.tensor([[False, True], [True, False]]), "must hold integers, got dtype torch.bool"),
        (torch.tensor([[0, 1], [1, 0]], dtype=torch.complex64), "must hold integers, got dtype torch.complex64"),
        (torch.zeros(3, 4, dtype=torch.long), r"must have shape \[2, E\], got \[3, 4\]$"),  # no transpose to suggest
    ],
)
def test_edge_lists_that_are_no_graph_are_refused(edges, message):
    with pytest.raises(ValueError, match=message):
        check_edge_index(edges, 3)


def test_an_edge_list_given_as_a_transpose_comes_back_contiguous():
    # The returned edges are documented contiguous: int64 edges passed as a view must be copied.
    rows = torch.tensor([[0, 1], [1, 2], [2, 0]])
    edges = check_edge_index(rows.T, 3)
    assert edges.is_contiguous() and torch.equal(edges, rows.T)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64, np.int32])
def test_edge_index_of_any_integer_dtype(dtype):
    # torch has no min or max for uint16 / uint32 / uint64: the check failed inside torch.
    edges = np.array([[0, 1, 1, 2], [1, 0, 2, 1]], dtype=dtype)
    assert torch.equal(check_edge_index(edges, 3), torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
    with pytest.raises(ValueError, match=r"\[0, 3\], outside \[0, 3\)"):
        check_edge_index(np.array([[0, 3], [1, 0]], dtype=dtype), 3)


@pytest.mark.parametrize("low", [0, 3])
def test_edge_index_past_int64_is_reported_as_given(low):
    # uint64 indices from 2**63 up wrapped round in the cast to int64: "[-9223372036854775803, 1]".
    with pytest.raises(ValueError, match=rf"\[{low}, 9223372036854775813\], outside \[0, 4\)"):
        check_edge_index(np.array([[low, 2**63 + 5], [low + 1, low]], dtype=np.uint64), 4)


def test_symmetric_edges_are_both_directions_once_in_order():
    # The ChebNet and GCN layers built this with Tensor.unique(dim=1), which sorts column by
    # column on the CPU: about 0.2 s per layer on a 10k-node graph, twelve layers per flow.
    g = torch.Generator().manual_seed(0)
    edges = torch.randint(0, 50, (2, 300), generator=g)
    both = torch.cat([edges, edges.flip(0)], dim=1)
    assert torch.equal(symmetric_edges(edges, 50), both.unique(dim=1))
    assert symmetric_edges(torch.zeros(2, 0, dtype=torch.long), 3).shape == (2, 0)
    assert torch.equal(make_conv("gcn", 2, 2, edges, 50, (0, 1)).edge_index, both.unique(dim=1))


@pytest.mark.parametrize("conv", ["l3net", "cheb", "gcn"])
def test_layers_refuse_signals_of_another_graph_size(conv):
    # A signal with more nodes than the graph came out as if its extra nodes were isolated.
    path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    layer = make_conv(conv, 2, 4, path, 3, (0, 1))
    assert layer(torch.randn(5, 3, 2)).shape == (5, 3, 4)
    with pytest.raises(ValueError, match=r"num_nodes=3, in_channels=2\], got \[5, 4, 2\]"):
        layer(torch.randn(5, 4, 2))
    with pytest.raises(ValueError, match=r"in_channels=2\], got \[5, 3, 3\]"):  # failed inside a matmul
        layer(torch.randn(5, 3, 3))
    with pytest.raises(ValueError, match="num_nodes=3"):
        HopMeans(path, 3)(torch.randn(5, 4, 2))
    with pytest.raises(ValueError, match="num_nodes=3"):
        GraphVelocityField(path, 3, 2, hidden=4, conv=conv)(torch.tensor(0.0), torch.randn(5, 4, 2))


def test_layer_sizes_are_checked_counts():
    path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    with pytest.raises(ValueError, match="num_nodes must be an integer >= 1, got 3.5"):
        check_edge_index(path, 3.5)
    with pytest.raises(ValueError, match="num_nodes must be an integer"):
        L3NetConv(2, 4, path, "3")
    with pytest.raises(ValueError, match="K must be an integer >= 1, got 0"):  # an empty AssertionError
        StaticChebConv(2, 4, path, 3, K=0)
    with pytest.raises(ValueError, match="orders must be a non-empty sequence of hop radii"):
        make_conv("cheb", 2, 4, path, 3, ())
    with pytest.raises(ValueError, match=r"orders must be a non-empty sequence .*, got 2$"):  # 'int' is not iterable
        ConditionalGraphFlow(path, 3, 2, 2, orders=2)
    with pytest.raises(ValueError, match="orders must be an integer >= 0, got 1.5"):  # read as 1
        hop_supports(path, 3, (1.5,))
    with pytest.raises(ValueError, match="outside"):  # scipy's "index 5 exceeds matrix dimension"
        hop_supports(torch.tensor([[0, 5], [5, 0]]), 3, (0, 1))
