r"""The registry of public multi-behavior datasets and :func:`load_dataset`.

Each registered dataset is described by a :class:`PublicDataset`: where its
release lives, the sha256 of every file of its folder, its citation, license
note and expected counts. The folder itself (layout of
:func:`graphrec.data.io.read_folder`) is found by
:func:`graphrec.data.io.find_data_root`; nothing is downloaded.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from graphrec.data.dataset import DataFormatError, MultiBehaviorDataset
from graphrec.data.io import (
    find_data_root,
    read_folder,
    read_sha256sums,
    sha256_file,
)

#: The name under which :func:`load_dataset` builds the synthetic dataset.
SYNTHETIC = 'synthetic'


@dataclass(frozen=True)
class PublicDataset:
    r"""A registered public dataset: provenance, checksums and counts.

    Args:
        name (str): Registry name and folder name, e.g. ``'tmall'``.
        description (str): One paragraph: what the interactions are.
        release_url (str): The repository the release comes from.
        files (Dict[str, str]): sha256 of each file of the folder, by path
            relative to it (the contents of its ``SHA256SUMS``).
        citation (str): The paper to cite for the release.
        license_note (str): What is known about the terms of use.
        stats (Dict[str, Any]): Expected ``num_users``, ``num_items``,
            ``behaviors``, ``train`` counts per behavior and ``test`` count.
        derivation (str): How the folder was derived from the release files.
            (default: ``''``)
        test_unvisited (bool): The release removed every test pair from the
            user's train behaviors (no test item was viewed or carted in
            train), so a validation split should do the same to look like
            test (see :func:`~graphrec.data.carve_validation`).
            (default: :obj:`False`)
    """
    name: str
    description: str
    release_url: str
    files: Dict[str, str]
    citation: str
    license_note: str
    stats: Dict[str, Any]
    derivation: str = ''
    test_unvisited: bool = False

    def fetch_instructions(self) -> str:
        r"""Says where the release is and where to put its folder.

        The text is appended to the error :func:`load_dataset` raises when
        the folder is not found.
        """
        sums = ''.join(f'    {digest}  ./{rel}\n'
                       for rel, digest in sorted(self.files.items()))
        derivation = textwrap.fill(self.derivation, 76,
                                   initial_indent='  ',
                                   subsequent_indent='  ')
        return (
            f"Dataset '{self.name}' is not downloaded automatically.\n"
            f'Release: {self.release_url}\n'
            f'{derivation}\n'
            f'Place the derived folder at $GRAPHREC_DATA/{self.name} (or '
            f'~/.cache/graphrec/{self.name}) with this layout:\n'
            f'    meta.json  train/<behavior>.txt  test/'
            f"{self.stats['behaviors'][-1]}.txt  SHA256SUMS\n"
            f'and check it with `sha256sum -c SHA256SUMS`; the registered '
            f'SHA256SUMS is:\n{sums}'
            f'See datasets/{self.name}.md for the derivation and counts.')

    def check_files(self, root: Union[str, Path]) -> None:
        r"""Checks that the folder at :obj:`root` holds the registered files.

        The digests come from its ``SHA256SUMS`` (which :func:`read_folder`
        verifies against the files) or, for files it does not list, from
        hashing them.

        Raises:
            DataFormatError: A registered file is missing or differs.
        """
        root = Path(root)
        sums_path = root / 'SHA256SUMS'
        listed = read_sha256sums(sums_path) if sums_path.is_file() else {}
        for rel, expected in sorted(self.files.items()):
            path = root / rel
            if rel in listed:
                actual = listed[rel][0]
            elif path.is_file():
                actual = sha256_file(path)
            else:
                raise DataFormatError(f"file of the registered '{self.name}' "
                                      f'release is missing', path)
            if actual != expected:
                raise DataFormatError(
                    f"sha256 mismatch with the registered '{self.name}' "
                    f'release: expected {expected}, got {actual}', path)

    def check_stats(self, dataset: MultiBehaviorDataset) -> None:
        r"""Compares :obj:`dataset`'s counts with the registered ones.

        Raises:
            DataFormatError: A count or the behavior list differs.
        """
        actual = dataset.stats()
        source = dataset.info.get('source')
        for key in ('num_users', 'num_items', 'behaviors', 'train', 'test'):
            if actual[key] != self.stats[key]:
                raise DataFormatError(
                    f"'{key}' of dataset '{self.name}' is {actual[key]}, "
                    f'expected {self.stats[key]} (registered counts); the '
                    f'folder is not the registered release', source)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(name={self.name!r}, '
                f'release_url={self.release_url!r})')


TMALL = PublicDataset(
    name='tmall',
    description=(
        'Tmall (Alibaba) e-commerce interactions of 15,449 users with 11,953 '
        'items under view, cart and buy, as released with MB-CGCN, one '
        'held-out purchase per user; no timestamps. Also called "tmall" by '
        'DA-GCN and "taobao" by MuLe.'),
    release_url='https://github.com/SS-00-SS/MBCGCN',
    files={
        'meta.json':
            '9ec6e2cc495232001ee343e2b4bf3870d3aed86e94c3f913b772eb8d191a31b4',
        'test/buy.txt':
            'f32d0d63bd6b794bd1c3c9f955845b5ffdc51eb431d85c28052e646861e0b08d',
        'train/buy.txt':
            '6c2fc35d5279628f9990d649b95e5ceb2bd298d5d93d7cea272734e6947afc6d',
        'train/cart.txt':
            '3cdb70eead5e0af31386f0428da6bbd19f951a71ea535962214547a0a15b0fe7',
        'train/view.txt':
            'e3d186fa39e21ee729f26dc3af2cd7914a5f60ab5e237e6d02943abab46f22e2',
    },
    citation=(
        'Zhiyong Cheng, Sai Han, Fan Liu, Lei Zhu, Zan Gao, Yuxin Peng. '
        'Multi-Behavior Recommendation with Cascading Graph Convolution '
        'Networks. In Proceedings of the ACM Web Conference 2023 (WWW '
        "'23). arXiv:2303.15720."),
    license_note=(
        'The release repository has no license file. The interactions are '
        'Tmall (Alibaba) logs distributed for academic research; use them '
        'for non-commercial research only, cite the release, and do not '
        'redistribute them without checking the original terms.'),
    stats={
        'num_users': 15449,
        'num_items': 11953,
        'behaviors': ['view', 'cart', 'buy'],
        'train': {'view': 858505, 'cart': 180027, 'buy': 92180},
        'test': 15449,
    },
    derivation=(
        'From folder Data/ of the repository: train/buy.txt and '
        'train/cart.txt are Data/buy/train.txt and Data/cart/train.txt, '
        'test/buy.txt is Data/buy/test.txt, one user<TAB>item pair a line; '
        'train/view.txt holds the nonzeros of the user-item block R of the '
        'adjacency [[0, R], [R^T, 0]] stored in Data/view/s_adj_mat.npz '
        '(rows are users, columns minus 15,449 are items), the only place '
        'the view train edges are released; meta.json lists behaviors '
        '["view", "cart", "buy"], target "buy".'),
)

RETAILROCKET = PublicDataset(
    name='retailrocket',
    description=(
        'Retail Rocket e-commerce events (May to September 2015) of 2,174 '
        'users with 30,113 items under view, cart and buy, as preprocessed '
        'by SSLRec; a unix time on every train interaction and one held-out '
        'purchase per user.'),
    release_url='https://github.com/HKUDS/SSLRec',
    test_unvisited=True,
    files={
        'meta.json':
            'f68aefa11b0f81b7b5b6b8676cac4651d3aaff72bc65cf2e12b7417878301657',
        'test/buy.txt':
            'c998b7ae9c7e2b57455f259d86587bc23e8818028aa22910513c730f552d7a25',
        'train/buy.txt':
            'da4f77498ebb9ca28cc7d0a6ebcc46463316358d3e4cb672898e8d7461de09a3',
        'train/cart.txt':
            '6c7cb624e223c97eabc3c1db4213b4e1e61a00013fda176227ef50e2208e31f9',
        'train/view.txt':
            '2c5215140804cc0131d0b458d69e1ec90c7a05611b59d34903f75624f99e00b1',
    },
    citation=(
        'Xubin Ren, Lianghao Xia, Yuhao Yang, Wei Wei, Tianle Wang, Xuheng '
        'Cai, Chao Huang. SSLRec: A Self-Supervised Learning Framework for '
        'Recommendation. In Proceedings of the 17th ACM International '
        'Conference on Web Search and Data Mining (WSDM 2024), 567-575.'),
    license_note=(
        'The raw events were published by Retail Rocket on Kaggle '
        '("Retailrocket recommender system dataset", hashed ids) under a '
        'Creative Commons non-commercial license (CC BY-NC-SA 4.0 as we '
        'recall it; not verified offline): research use with attribution. '
        'The SSLRec files are a preprocessed subset; check both before any '
        'other use.'),
    stats={
        'num_users': 2174,
        'num_items': 30113,
        'behaviors': ['view', 'cart', 'buy'],
        'train': {'view': 75374, 'cart': 12456, 'buy': 9551},
        'test': 2174,
    },
    derivation=(
        'From folder datasets/multi_behavior/retail_rocket of the '
        'repository: trn_view, trn_cart and trn_buy are pickled scipy '
        'matrices [2174, 30113] whose nonzero values are unix times; each '
        'nonzero becomes a user<TAB>item<TAB>time line of train/<behavior>'
        '.txt; the nonzeros of test_mat.pkl become test/buy.txt; meta.json '
        'lists behaviors ["view", "cart", "buy"], target "buy".'),
)

#: The registered public datasets by name.
PUBLIC_DATASETS: Dict[str, PublicDataset] = {
    d.name: d for d in (TMALL, RETAILROCKET)}


def list_datasets() -> List[str]:
    r"""Returns the names :func:`load_dataset` accepts, sorted.

    They are the registered public datasets and ``'synthetic'``.
    """
    return sorted([*PUBLIC_DATASETS, SYNTHETIC])


def get_public_dataset(name: str) -> PublicDataset:
    r"""Returns the registry entry of public dataset :obj:`name`.

    Raises:
        ValueError: :obj:`name` is not registered.
    """
    if name not in PUBLIC_DATASETS:
        raise ValueError(f"unknown public dataset {name!r} (choices: "
                         f"{sorted(PUBLIC_DATASETS)})")
    return PUBLIC_DATASETS[name]


def _synthetic() -> MultiBehaviorDataset:
    try:
        from graphrec.datasets.synthetic import make_synthetic
    except ImportError as e:
        raise ImportError(
            f"dataset 'synthetic' needs graphrec.datasets.synthetic."
            f"make_synthetic, which could not be imported ({e})") from e
    return make_synthetic()


def load_dataset(name_or_path: Union[str, Path],
                 root: Optional[Union[str, Path]] = None,
                 verify: bool = True,
                 behaviors: Optional[Sequence[str]] = None,
                 columns: Optional[Sequence[str]] = None
                 ) -> MultiBehaviorDataset:
    r"""Loads a dataset by registered name, from a dataset folder, or from
    an event log file.

    A registered public name is looked up with
    :func:`~graphrec.data.io.find_data_root` (or in :obj:`root`), read with
    :func:`~graphrec.data.io.read_folder`, and checked against the registered
    checksums (with :obj:`verify`) and counts. ``'synthetic'`` builds the
    synthetic dataset with its defaults. Any other value is read as a
    dataset folder, or, for a file, as an event log with
    :func:`graphrec.data.io.read_event_log`, which needs :obj:`behaviors`
    (cascade order, target last) and reads the columns :obj:`columns`.

    Args:
        name_or_path (str or Path): A name from :func:`list_datasets` or a
            dataset folder.
        root (str or Path, optional): A folder holding ``<name>/``, searched
            instead of the default places. (default: :obj:`None`)
        verify (bool): Check the files' sha256. (default: :obj:`True`)
        behaviors (Sequence[str], optional): For an event log: the
            behaviors to keep, target last. (default: :obj:`None`)
        columns (Sequence[str], optional): For an event log: the user,
            item and behavior columns and optionally the time column.
            (default: :obj:`None`, ``user item behavior``, no time)

    Raises:
        ValueError: An unknown name, or a file instead of a folder.
        FileNotFoundError: A registered dataset's folder is not found; the
            message says where to get it.
        DataFormatError: The data is malformed or not the registered release.

    Example:
        >>> dataset = load_dataset('tmall')  # doctest: +SKIP
        >>> dataset.stats()['test']          # doctest: +SKIP
        15449
    """
    key = str(name_or_path)
    if key == SYNTHETIC:
        return _synthetic()
    if key in PUBLIC_DATASETS:
        spec = PUBLIC_DATASETS[key]
        if root is None:
            folder = find_data_root(key, spec.fetch_instructions())
        else:
            folder = Path(root) / key
            if not (folder / 'meta.json').is_file():
                raise FileNotFoundError(
                    f"no folder for dataset {key!r} at '{folder}' (no "
                    f"meta.json there; root={str(root)!r})\n"
                    + spec.fetch_instructions())
        dataset = read_folder(folder, verify=verify)
        if verify:
            spec.check_files(folder)
        spec.check_stats(dataset)
        dataset.info['test_unvisited'] = spec.test_unvisited
        return dataset
    path = Path(key)
    if path.is_dir():
        return read_folder(path, verify=verify)
    if path.is_file() and behaviors:
        from graphrec.data.io import read_event_log
        columns = list(columns or ['user', 'item', 'behavior'])
        if len(columns) not in (3, 4):
            raise ValueError(f"'columns' must name the user, item and "
                             f"behavior columns and optionally the time "
                             f"column (got {columns!r})")
        return read_event_log(path, user_col=columns[0],
                              item_col=columns[1], behavior_col=columns[2],
                              time_col=columns[3] if len(columns) > 3 else
                              None, behaviors=list(behaviors))
    if path.is_file():
        raise ValueError(
            f"'{path}' is a file, not a dataset folder; an event log needs "
            f"its behaviors in cascade order, target last (behaviors=[..., "
            f"target]; on the command line --behaviors view cart buy) and "
            f"its columns if not 'user item behavior' (--columns USER ITEM "
            f"BEHAVIOR [TIME])")
    raise ValueError(f"unknown dataset {key!r}: neither a registered name "
                     f"(choices: {list_datasets()}) nor an existing folder")
