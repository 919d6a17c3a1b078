import copy

import torch

import igraphflow.head
from igraphflow.head import fit_head, graph_head, head_rows, products_validate, with_products
from igraphflow.separability import fit_softmax

PATH = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])


def _fitted_head(products: bool = False) -> torch.nn.Sequential:
    head = graph_head(PATH, 3, 2, 3, orders=(0, 1))
    torch.nn.init.normal_(head[-1].weight, generator=torch.Generator().manual_seed(0))
    return with_products(head, 2, True) if products else head


def _spread_labels(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    # Label 1: a large value either way at the node, which no linear rule on the means can tell.
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(2, (n, 3), generator=g)
    h = torch.randn(n, 3, 2, generator=g) * (0.5 + 2.0 * y.unsqueeze(-1))
    return h, y


def test_adding_products_keeps_the_logits_and_removing_them_gives_the_weights_back():
    head = _fitted_head()
    x = torch.randn(7, 3, 2)
    torch.manual_seed(0)
    expected = torch.rand(())
    torch.manual_seed(0)
    wide = with_products(head, 2, True)
    assert torch.rand(()) == expected  # no random numbers taken
    assert wide[0].products and not head[0].products and wide[-1].in_features == 2 * (2 + 3)
    torch.testing.assert_close(wide(x), head(x))
    narrow = with_products(wide, 2, False)
    assert not narrow[0].products
    assert torch.equal(narrow[-1].weight, head[-1].weight) and torch.equal(narrow[-1].bias, head[-1].bias)
    assert with_products(wide, 2, True)[-1].weight.data_ptr() != wide[-1].weight.data_ptr()  # a copy


def test_removing_products_drops_their_weights():
    wide = _fitted_head(products=True)
    with torch.no_grad():
        wide[-1].weight.normal_()
    x = torch.randn(7, 3, 2)
    plain = wide[0].plain_columns(2)
    expected = wide[0](x)[..., plain] @ wide[-1].weight[:, plain].T + wide[-1].bias
    torch.testing.assert_close(with_products(wide, 2, False)(x), expected)


def test_head_rows_are_each_nodes_features_with_its_label(monkeypatch):
    h, y = _spread_labels(50)
    means = graph_head(PATH, 3, 2, 2, orders=(0, 1))[0]
    features, labels = head_rows(means, h, y, torch.Generator().manual_seed(0))
    assert torch.equal(features, means(h).flatten(0, 1)) and torch.equal(labels, y.flatten())
    monkeypatch.setattr(igraphflow.head, "MAX_ROWS", 40)
    features, labels = head_rows(means, h, y, torch.Generator().manual_seed(0))
    every, every_label = means(h).flatten(0, 1), y.flatten()
    row = torch.cdist(features, every).argmin(1)
    assert features.shape == (40, 4) and torch.equal(every[row], features) and torch.equal(every_label[row], labels)


def test_products_validate_where_the_labels_follow_the_spread_and_not_where_they_follow_the_mean():
    g = torch.Generator().manual_seed(0)
    h, y = _spread_labels()
    head = graph_head(PATH, 3, 2, 2, orders=(0,))
    assert products_validate(head, 2, (h[:300], y[:300]), (h[300:], y[300:]), g)
    shifted = torch.randn(400, 3, 2, generator=g) + 2.0 * y.unsqueeze(-1)
    assert not products_validate(head, 2, (shifted[:300], y[:300]), (shifted[300:], y[300:]), g)


def test_fit_head_fits_the_kept_features_of_the_training_and_validation_signals_together():
    h, y = _spread_labels()
    train, val = (h[:300], y[:300]), (h[300:], y[300:])
    initial = graph_head(PATH, 3, 2, 2, orders=(0, 1))
    head = fit_head(copy.deepcopy(initial), 2, train, val, torch.Generator().manual_seed(0))
    assert head[0].products
    reference = with_products(initial, 2, True)
    fit_softmax(reference[-1], reference[0](h).flatten(0, 1), y.flatten())
    torch.testing.assert_close(head(h), reference(h))


def test_fit_head_fits_a_linear_head_on_each_nodes_own_features():
    h, y = _spread_labels()
    h = h + 3.0 * y.unsqueeze(-1)
    initial = torch.nn.Linear(2, 2)
    head = fit_head(copy.deepcopy(initial), 2, (h[:300], y[:300]), (h[300:], y[300:]), torch.Generator().manual_seed(0))
    reference = fit_softmax(initial, h.flatten(0, 1), y.flatten())
    torch.testing.assert_close(head(h), reference(h))
