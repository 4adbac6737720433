"""package.xml names every run-time dependency of the node, with keys that rosdep knows.

fixtures/rosdep_keys.json records where each key is defined in rosdistro (regenerate with
fixtures/gen_rosdep_keys.py), which key each imported module needs, the libraries that have no key
(pip only) and keys that must not be used. The runtime code is metrabs_ros/ without the
training-only train/ and data/ (but with any of their modules that the runtime code imports),
nodes/pose_node and launch/*.py.
"""
from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / 'test' / 'fixtures' / 'rosdep_keys.json').read_text())
PACKAGE = 'metrabs_ros'
TRAINING_ONLY = ('train', 'data')
DEPEND_TAGS = ('buildtool_depend', 'build_depend', 'build_export_depend', 'buildtool_export_depend',
               'exec_depend', 'depend', 'test_depend', 'doc_depend')


@pytest.fixture(scope='module')
def manifest() -> ET.Element:
    return ET.parse(ROOT / 'package.xml').getroot()


def dependencies(manifest: ET.Element, *tags: str) -> set[str]:
    return {e.text.strip() for tag in (tags or DEPEND_TAGS) for e in manifest.findall(tag)}


def run_dependencies(manifest) -> set[str]:
    return dependencies(manifest, 'exec_depend', 'depend')


def runtime_files() -> list[Path]:
    package = ROOT / PACKAGE
    files = [p for p in sorted(package.rglob('*.py'))
             if p.relative_to(package).parts[0] not in TRAINING_ONLY]
    return files + [ROOT / 'nodes' / 'pose_node'] + sorted((ROOT / 'launch').glob('*.py'))


def imported_modules(tree: ast.AST, module_level_only: bool = False):
    """(module name, line) of every absolute import; with module_level_only, not the lazy imports
    inside functions."""
    nodes = tree.body if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            for alias in node.names:  # from metrabs_ros.data import dataset
                yield f'{node.module}.{alias.name}', node.lineno


def own_module_file(module: str) -> Path | None:
    base = ROOT / Path(*module.split('.'))
    for path in (base.with_suffix('.py'), base / '__init__.py'):
        if path.is_file():
            return path
    return None


def runtime_imports() -> dict[str, list[str]]:
    """Imported module -> where (file:line), over the runtime code and the training-only modules
    it imports (their module-level imports, followed)."""
    found: dict[str, list[str]] = {}
    queue = [(p, False) for p in runtime_files()]
    done = set()
    while queue:
        path, module_level_only = queue.pop()
        if path in done:
            continue
        done.add(path)
        tree = ast.parse(path.read_text(encoding='utf-8'))
        for module, line in imported_modules(tree, module_level_only):
            if module.split('.')[0] == PACKAGE:
                target = own_module_file(module)
                if target and target.relative_to(ROOT / PACKAGE).parts[0] in TRAINING_ONLY:
                    queue.append((target, True))
                continue
            found.setdefault(module, []).append(f'{path.relative_to(ROOT)}:{line}')
    return found


def third_party(module: str) -> bool:
    top = module.split('.')[0]
    return top != '__future__' and top not in sys.stdlib_module_names


# The fixture ------------------------------------------------------------------------------------
def test_fixture_provenance():
    provenance = FIXTURE['provenance']
    assert provenance['repo'] == 'https://github.com/ros/rosdistro'
    assert re.fullmatch(r'[0-9a-f]{40}', provenance['commit'])
    assert {'rosdep/base.yaml', 'rosdep/python.yaml', 'humble/distribution.yaml'} <= \
        set(provenance['files'])


def test_fixture_keys_are_defined():
    for key in FIXTURE['keys']:
        if key in FIXTURE['system_keys']:
            entry = FIXTURE['system_keys'][key]
            assert entry['defined'] and entry['file'] in ('rosdep/base.yaml',
                                                          'rosdep/python.yaml'), key
            # A rule for every platform the supported distros release on (Humble: jammy;
            # Jazzy/Kilted: noble, bookworm), and none of them a pip rule.
            for platform, rule in entry['platforms'].items():
                assert rule and 'pip' not in rule, (key, platform, rule)
        else:
            distros = FIXTURE['ros_packages'][key]['distros']
            assert {'humble', 'jazzy', 'kilted'} <= set(distros), (key, distros)
    assert not FIXTURE['rejected_keys']['python3-safetensors-pip']['rosdistro']['defined']
    for library, entry in FIXTURE['pip_only'].items():
        assert entry['reason'] and library not in FIXTURE['import_keys']


# package.xml ------------------------------------------------------------------------------------
def test_package_xml_format_3(manifest):
    assert manifest.tag == 'package' and manifest.get('format') == '3'
    assert manifest.findtext('name') == PACKAGE
    assert manifest.find('export/build_type').text == 'ament_cmake'


def test_every_dependency_key_is_known(manifest):
    keys = dependencies(manifest)
    unknown = sorted(keys - set(FIXTURE['keys']))
    assert not unknown, f'keys not recorded in fixtures/rosdep_keys.json (not checked against ' \
                        f'rosdistro): {unknown}'
    rejected = sorted(keys & set(FIXTURE['rejected_keys']))
    assert not rejected, {k: FIXTURE['rejected_keys'][k]['reason'] for k in rejected}
    for library in FIXTURE['pip_only']:
        assert not any(library in key for key in keys), \
            f'{library} has no rosdep key: {FIXTURE["pip_only"][library]["reason"]}'


def test_dependencies_are_not_listed_twice(manifest):
    listed = [e.text.strip() for tag in DEPEND_TAGS for e in manifest.findall(tag)
              if tag not in ('test_depend', 'doc_depend')]
    assert len(listed) == len(set(listed)), sorted({k for k in listed if listed.count(k) > 1})


def import_problems(imports: dict[str, list[str]], run: set[str]):
    """(imports with no key recorded, keys that package.xml lacks)."""
    unmapped, missing = [], []
    for module, where in sorted(imports.items()):
        if not third_party(module):
            continue
        top = module.split('.')[0]
        if top in FIXTURE['pip_only']:
            continue
        key = FIXTURE['import_keys'].get(top)
        if key is None:
            if not any(u.startswith(f'{top} (') for u in unmapped):
                unmapped.append(f'{top} ({where[0]})')
        elif key not in run:
            missing.append(f'{top} -> <exec_depend>{key}</exec_depend> ({where[0]})')
    for module, keys in FIXTURE['implied_keys'].items():
        if module in imports:
            missing += [f'{module} needs <exec_depend>{k}</exec_depend>' for k in keys
                        if k not in run]
    return unmapped, missing


def test_import_check_flags_a_new_import():
    unmapped, missing = import_problems(
        {'nav_msgs.msg': ['x.py:1'], 'nav_msgs.msg.Odometry': ['x.py:1'], 'cv2': ['y.py:2'],
         'rclpy.lifecycle': ['z.py:3'], 'json': ['x.py:4'], 'safetensors.torch': ['w.py:5']},
        {'rclpy'})
    assert unmapped == ['nav_msgs (x.py:1)']
    assert missing == ['cv2 -> <exec_depend>python3-opencv</exec_depend> (y.py:2)',
                       'rclpy.lifecycle needs <exec_depend>lifecycle_msgs</exec_depend>']


def test_every_runtime_import_has_a_dependency(manifest):
    imports = runtime_imports()
    assert 'rclpy' in imports and 'torch' in imports  # the scan sees the node and the model
    unmapped, missing = import_problems(imports, run_dependencies(manifest))
    assert not unmapped, 'imports with no rosdep key recorded: add the key to package.xml and ' \
                         'to IMPORT_KEYS in fixtures/gen_rosdep_keys.py (or PIP_ONLY with the ' \
                         f'reason): {unmapped}'
    assert not missing, f'package.xml lacks: {missing}'


def test_no_dependency_for_an_unused_import(manifest):
    """Each library key in package.xml is imported somewhere in the runtime code."""
    imported = {m.split('.')[0] for m in runtime_imports()}
    by_key = {}
    for module, key in FIXTURE['import_keys'].items():
        by_key.setdefault(key, set()).add(module)
    implied = {k for keys in FIXTURE['implied_keys'].values() for k in keys}
    unused = sorted(k for k in run_dependencies(manifest)
                    if k in by_key and not (by_key[k] & imported) and k not in implied)
    assert not unused, f'exec_depend on packages nothing imports: {unused}'


def test_launch_files_depend_on_the_packages_they_start(manifest):
    run = run_dependencies(manifest)
    for path in sorted((ROOT / 'launch').glob('*.py')):
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == 'package' and isinstance(keyword.value, ast.Constant):
                        package = keyword.value.value
                        assert package == PACKAGE or package in run, \
                            f'{path.name} starts {package}: add <exec_depend>{package}'


def test_message_dependencies_are_build_dependencies(manifest):
    build = dependencies(manifest, 'depend', 'build_depend')
    used = set()
    for msg in (ROOT / 'msg').glob('*.msg'):
        for line in msg.read_text().splitlines():
            line = line.split('#')[0].strip()
            match = re.match(r'([A-Za-z]\w*)/\w+', line)
            if match:
                used.add(match.group(1))
    cmake = (ROOT / 'CMakeLists.txt').read_text()
    declared = re.search(r'DEPENDENCIES([^)]*)\)', cmake).group(1).split()
    assert used <= set(declared) <= build, (used, declared, build)
    assert {'rosidl_default_generators', 'ament_cmake', 'ament_cmake_python'} <= \
        dependencies(manifest, 'buildtool_depend')
    assert 'rosidl_default_runtime' in run_dependencies(manifest)
    assert manifest.findtext('member_of_group') == 'rosidl_interface_packages'


def test_test_dependencies(manifest):
    assert {'python3-pytest', 'ament_cmake_pytest'} <= dependencies(manifest, 'test_depend')
