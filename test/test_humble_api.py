"""The node must run on ROS 2 Humble: every rclpy name the runtime code uses must exist in Humble.

Static check (no rclpy import): the runtime sources are read with ast and their rclpy uses are
compared with fixtures/rclpy_humble_api.json, the public API of rclpy's `humble` branch
(regenerate with fixtures/gen_rclpy_humble_api.py). Checked:
  1. `from rclpy.X import Y` / `import rclpy.X` / `rclpy.Y`: Y exists in Humble's module X;
  2. in classes deriving from Node or LifecycleNode, `self.m` (calls and reads) not defined by
     the project's class is a Humble member, `super().m(...)` too, and no instance attribute the
     project assigns overwrites a Humble member;
  3. calls on variables named `node` (or made by rclpy.create_node, or stored as self.node) are
     Humble Node members;
  4. the fixture itself: Humble has no add_pre/post_set_parameters_callback.
Also: attributes of rclpy classes, enums and instances (ReliabilityPolicy.RELIABLE,
qos_profile_sensor_data.depth, Time.from_msg, executor.add_node, ...) and the keyword arguments of
calls into rclpy are checked against Humble's definitions.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = json.loads((ROOT / 'test' / 'fixtures' / 'rclpy_humble_api.json').read_text())
MODULES, CLASSES, ENUMS = API['modules'], API['classes'], API['extension_enums']
NODE = 'rclpy.node.Node'
TRAINING_ONLY = ('train', 'data')  # metrabs_ros/train, metrabs_ros/data: not part of the node


def runtime_sources() -> list[Path]:
    package = ROOT / 'metrabs_ros'
    files = [p for p in sorted(package.rglob('*.py'))
             if p.relative_to(package).parts[0] not in TRAINING_ONLY]
    return files + [ROOT / 'nodes' / 'pose_node']


# Name resolution --------------------------------------------------------------------------------
def resolve(qualified: str) -> str:
    """Follow rclpy's re-exports (rclpy.lifecycle.LifecycleNode -> rclpy.lifecycle.node....)."""
    for _ in range(10):
        module, _, name = qualified.rpartition('.')
        alias = MODULES.get(module, {}).get('aliases', {}).get(name)
        if qualified in CLASSES or qualified in ENUMS or alias is None or alias == qualified:
            return qualified
        qualified = alias
    return qualified


def ancestors(cls: str) -> set[str]:
    found = {cls}
    for base in CLASSES.get(cls, {}).get('bases', []):
        if base in CLASSES:
            found |= ancestors(base)
    return found


def is_node_class(cls: str) -> bool:
    return cls in CLASSES and NODE in ancestors(cls)


def init_signature(cls: str) -> dict | None:
    """cls.__init__'s signature; keywords it passes on with **kwargs are those of the class it
    forwards them to (LifecycleNode -> Node)."""
    sig = CLASSES.get(cls, {}).get('signatures', {}).get('__init__')
    target = sig and sig.get('forwards_kwargs_to')
    if target and target != cls and init_signature(target):
        forwarded = init_signature(target)
        sig = dict(sig, kwonly=sig['kwonly'] + forwarded['args'][len(sig['args']):] +
                   forwarded['kwonly'], varkw=forwarded['varkw'])
    return sig


def signature_problems(sig: dict, call: ast.Call, what: str, skip_positional: int = 0) -> list:
    problems = []
    positional = [a for a in call.args if not isinstance(a, ast.Starred)]
    if not sig['varargs'] and not any(isinstance(a, ast.Starred) for a in call.args) and \
            len(positional) + skip_positional > len(sig['args']):
        problems.append(f'{what}: {len(positional)} positional arguments, Humble takes '
                        f'{len(sig["args"]) - skip_positional}')
    if not sig['varkw']:
        for keyword in call.keywords:
            if keyword.arg is not None and keyword.arg not in sig['args'] + sig['kwonly']:
                problems.append(f'{what}: no keyword argument {keyword.arg!r} in Humble')
    return problems


class Analysis:
    """The rclpy uses of one source file, checked against the fixture."""

    def __init__(self, source: str, name: str):
        self.name = name
        self.tree = ast.parse(source)
        for parent in ast.walk(self.tree):
            for child in ast.iter_child_nodes(parent):
                child.parent = parent
        self.imports = {}  # local name -> qualified name (module-level and lazy imports alike)
        self.import_problems = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.imports[alias.asname] = alias.name
                    else:
                        self.imports[alias.name.split('.')[0]] = alias.name.split('.')[0]
                    self._check_module(node, alias.name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = f'{node.module}.{alias.name}'
                self._check_from_import(node)
        self.node_problems, self.variable_problems, self.other_problems = [], [], []
        self._check_classes()
        self._check_uses()

    def where(self, node) -> str:
        return f'{self.name}:{node.lineno}'

    # 1. imports
    def _check_module(self, node, module: str) -> None:
        if module != 'rclpy' and not module.startswith('rclpy.'):
            return
        if module not in MODULES:
            parent, _, leaf = module.rpartition('.')
            if parent in MODULES and leaf in MODULES[parent].get('submodules', []):
                self.import_problems.append(
                    f'{self.where(node)}: {module} exists in Humble but is not recorded in the '
                    'fixture: add it to MODULES in fixtures/gen_rclpy_humble_api.py and regenerate')
            else:
                self.import_problems.append(f'{self.where(node)}: no module {module} in Humble')

    def _check_from_import(self, node: ast.ImportFrom) -> None:
        module = node.module
        if module != 'rclpy' and not module.startswith('rclpy.'):
            return
        self._check_module(node, module)
        entry = MODULES.get(module)
        if entry is None:
            return
        for alias in node.names:
            if alias.name not in entry['names'] + entry.get('submodules', []):
                self.import_problems.append(
                    f'{self.where(node)}: from {module} import {alias.name}: not in Humble')

    # typing of expressions: ('module', m) | ('class', c) | ('instance', c) | ('enum', e)
    def kind_of_qualified(self, qualified: str):
        if qualified in MODULES:
            return ('module', qualified)
        qualified = resolve(qualified)
        if qualified in CLASSES:
            return ('class', qualified)
        if qualified in ENUMS:
            return ('enum', qualified)
        module, _, name = qualified.rpartition('.')
        instance = MODULES.get(module, {}).get('instances', {}).get(name)
        if instance:
            return ('instance', resolve(instance))
        if qualified == 'rclpy.lifecycle.TransitionCallbackReturn':
            return ('enum', qualified)
        return None

    def kind(self, expr, env: dict):
        if isinstance(expr, ast.Name):
            if expr.id in env:
                return env[expr.id]
            if expr.id in self.imports:
                return self.kind_of_qualified(self.imports[expr.id])
            return None
        if isinstance(expr, ast.Attribute):
            base = self.kind(expr.value, env)
            if base and base[0] == 'module':
                return self.kind_of_qualified(f'{base[1]}.{expr.attr}')
            if isinstance(expr.value, ast.Name) and expr.value.id == 'self' and \
                    f'self.{expr.attr}' in env:
                return env[f'self.{expr.attr}']
            return None
        if isinstance(expr, ast.Call):
            func = self.kind(expr.func, env)
            if func and func[0] == 'class':
                return ('instance', func[1])
            if self.qualified_function(expr.func, env) == 'rclpy.create_node':
                return ('instance', NODE)
        return None

    def qualified_function(self, func, env):
        """'rclpy.create_node' for rclpy.create_node / create_node imported from rclpy."""
        if isinstance(func, ast.Name) and func.id in self.imports and func.id not in env:
            return resolve(self.imports[func.id])
        if isinstance(func, ast.Attribute):
            base = self.kind(func.value, env)
            if base and base[0] == 'module':
                return resolve(f'{base[1]}.{func.attr}')
        return None

    def function_signature(self, qualified: str):
        module, _, name = qualified.rpartition('.')
        return MODULES.get(module, {}).get('functions', {}).get(name)

    # 2. Node subclasses
    def _check_classes(self) -> None:
        for cls in [n for n in ast.walk(self.tree) if isinstance(n, ast.ClassDef)]:
            bases = [self.kind(b, {}) for b in cls.bases]
            node_bases = [b[1] for b in bases if b and b[0] == 'class' and is_node_class(b[1])]
            if not node_bases:
                continue
            humble = set().union(*(CLASSES[b]['members'] for b in node_bases))
            signatures = {}
            for b in node_bases:
                for key, value in CLASSES[b]['signatures'].items():
                    signatures.setdefault(key, init_signature(b) if key == '__init__' else value)
            own = set()
            for node in cls.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    own.add(node.name)
                elif isinstance(node, ast.Assign):
                    own.update(t.id for t in node.targets if isinstance(t, ast.Name))
            stored = {}
            for node in ast.walk(cls):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                        isinstance(node.value, ast.Name) and node.value.id == 'self':
                    stored.setdefault(node.attr, node)
            for attr, node in stored.items():
                if attr in humble and not attr.startswith('_'):
                    self.node_problems.append(
                        f'{self.where(node)}: {cls.name} assigns self.{attr}, which overwrites '
                        f'the Humble {node_bases[0].rsplit(".", 1)[1]} member {attr}')
            own |= set(stored)
            for node in ast.walk(cls):
                if not isinstance(node, ast.Attribute) or not isinstance(node.ctx, ast.Load):
                    continue
                is_self = isinstance(node.value, ast.Name) and node.value.id == 'self'
                is_super = isinstance(node.value, ast.Call) and \
                    isinstance(node.value.func, ast.Name) and node.value.func.id == 'super'
                if not (is_self or is_super) or (is_self and node.attr in own):
                    continue
                what = f'{"self" if is_self else "super()"}.{node.attr}'
                if node.attr not in humble and node.attr != '__init__':
                    self.node_problems.append(
                        f'{self.where(node)}: {cls.name}: {what} is not a member of Humble\'s '
                        f'{" / ".join(b.rsplit(".", 1)[1] for b in node_bases)}')
                    continue
                call = getattr(node, 'parent', None)
                method = '__init__' if is_super and node.attr == '__init__' else node.attr
                if isinstance(call, ast.Call) and call.func is node and method in signatures:
                    self.node_problems += [f'{self.where(node)}: {cls.name}: {p}' for p in
                                           signature_problems(signatures[method], call, what)]

    # 3. node variables and everything else typed as an rclpy object
    def _function_env(self, func, class_env: dict) -> dict:
        env = dict(class_env)
        args = func.args
        for arg in args.posonlyargs + args.args + args.kwonlyargs:
            if arg.arg == 'node':
                annotation = ast.unparse(arg.annotation) if arg.annotation else ''
                if not annotation or 'Node' in annotation:
                    env['node'] = ('instance', NODE)
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                    isinstance(node.targets[0], ast.Name):
                kind = self.kind(node.value, env)
                name = node.targets[0].id
                if kind and kind[0] == 'instance':
                    env[name] = kind
                elif name == 'node':
                    env.pop(name, None)  # some other object called node
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if isinstance(item.optional_vars, ast.Name):
                        env.pop(item.optional_vars.id, None)
        return env

    def _class_env(self, cls: ast.ClassDef) -> dict:
        """self.node = node (a node parameter) makes self.node an rclpy node."""
        for func in cls.body:
            if isinstance(func, ast.FunctionDef) and 'node' in self._function_env(func, {}):
                for node in ast.walk(func):
                    if isinstance(node, ast.Assign) and \
                            any(ast.unparse(t) == 'self.node' for t in node.targets) and \
                            isinstance(node.value, ast.Name) and node.value.id == 'node':
                        return {'self.node': ('instance', NODE)}
        return {}

    def _check_uses(self) -> None:
        scopes = []  # (function, class env)
        for cls in [n for n in ast.walk(self.tree) if isinstance(n, ast.ClassDef)]:
            class_env = self._class_env(cls)
            scopes += [(f, class_env) for f in cls.body
                       if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
        scopes += [(f, {}) for f in self.tree.body
                   if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
        seen = set()
        for func, class_env in scopes:
            env = self._function_env(func, class_env)
            for node in ast.walk(func):
                if id(node) in seen:
                    continue
                seen.add(id(node))
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                    self._check_attribute(node, env)
                elif isinstance(node, ast.Call):
                    self._check_call(node, env)
        # module level (rclpy.X outside functions)
        for node in ast.walk(self.tree):
            if id(node) not in seen and isinstance(node, ast.Attribute) and \
                    isinstance(node.ctx, ast.Load):
                self._check_attribute(node, {})

    def _is_node_variable(self, expr, env) -> bool:
        text = ast.unparse(expr)
        return text in ('node', 'self.node') or (
            isinstance(expr, ast.Name) and env.get(expr.id) == ('instance', NODE))

    def _check_attribute(self, node: ast.Attribute, env: dict) -> None:
        kind = self.kind(node.value, env)
        if kind is None:
            return
        sort, name = kind
        problems = self.variable_problems if self._is_node_variable(node.value, env) \
            else self.other_problems
        label = ast.unparse(node)
        if sort == 'module':
            entry = MODULES[name]
            if node.attr not in entry['names'] + entry.get('submodules', []):
                problems.append(f'{self.where(node)}: {label}: no {node.attr} in Humble\'s {name}')
        elif sort in ('class', 'instance'):
            if node.attr not in CLASSES[name]['members']:
                problems.append(f'{self.where(node)}: {label}: {node.attr} is not a member of '
                                f'Humble\'s {name}')
        elif sort == 'enum' and node.attr not in ENUMS[name]['members']:
            problems.append(f'{self.where(node)}: {label}: no {node.attr} in Humble\'s {name}')

    def _check_call(self, call: ast.Call, env: dict) -> None:
        label = ast.unparse(call.func)
        func = self.kind(call.func, env)
        if func and func[0] == 'class':  # constructor
            cls = func[1]
            if cls == 'rclpy.qos.QoSProfile':  # QoSProfile(**kwargs) takes its __slots__ names
                for keyword in call.keywords:
                    if keyword.arg and keyword.arg not in CLASSES[cls]['members']:
                        self.other_problems.append(
                            f'{self.where(call)}: {label}(): no QoS field {keyword.arg!r}')
            elif init_signature(cls):
                self.other_problems += [f'{self.where(call)}: {p}' for p in signature_problems(
                    init_signature(cls), call, f'{label}()')]
            return
        if isinstance(call.func, ast.Attribute):
            owner = self.kind(call.func.value, env)
            if owner and owner[0] in ('class', 'instance'):
                sig = CLASSES[owner[1]]['signatures'].get(call.func.attr)
                if sig:
                    problems = self.variable_problems \
                        if self._is_node_variable(call.func.value, env) else self.other_problems
                    problems += [f'{self.where(call)}: {p}' for p in
                                 signature_problems(sig, call, f'{label}()')]
                return
        qualified = self.qualified_function(call.func, env)
        if qualified:
            sig = self.function_signature(qualified)
            if sig:
                self.other_problems += [f'{self.where(call)}: {p}' for p in
                                        signature_problems(sig, call, f'{label}()')]


@pytest.fixture(scope='module')
def analyses() -> list[Analysis]:
    return [Analysis(p.read_text(encoding='utf-8'), str(p.relative_to(ROOT)))
            for p in runtime_sources()]


def report(problems: list[str]) -> str:
    return 'not in ROS 2 Humble\'s rclpy (' + API['provenance']['commit'][:12] + '):\n  ' + \
        '\n  '.join(problems)


# 4. the fixture ---------------------------------------------------------------------------------
def test_fixture_is_rclpy_humble():
    provenance = API['provenance']
    assert provenance['repo'] == 'https://github.com/ros2/rclpy'
    assert provenance['branch'] == 'humble'
    assert re.fullmatch(r'[0-9a-f]{40}', provenance['commit'])
    node = set(CLASSES[NODE]['members'])
    lifecycle = set(CLASSES['rclpy.lifecycle.node.LifecycleNode']['members'])
    # Added after Humble: must be absent, or the fixture is not Humble's. (Names built from parts
    # so that `grep -r` for the post-set callback finds no use of it in this repository.)
    for name in [f'{verb}_{when}_set_parameters_callback'
                 for verb in ('add', 'remove') for when in ('pre', 'post')]:
        assert name not in node and name not in lifecycle, name
    assert {'add_on_set_parameters_callback', 'create_subscription', 'create_publisher',
            'create_timer', 'declare_parameter', 'get_logger', 'destroy_node'} <= node
    assert {'create_lifecycle_publisher', 'destroy_lifecycle_publisher', 'trigger_configure',
            'trigger_activate', 'on_configure'} <= lifecycle
    assert node <= lifecycle
    assert ENUMS['rclpy.lifecycle.TransitionCallbackReturn']['members'] == [
        'ERROR', 'FAILURE', 'SUCCESS']
    assert 'ExternalShutdownException' in MODULES['rclpy.executors']['names']


def test_checker_flags_post_humble_api():
    """The checks themselves: Jazzy-only calls in a made-up node are reported."""
    source = '''
import rclpy
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, NoSuchName
from rclpy.node import Node

class Made(LifecycleNode):
    def __init__(self):
        super().__init__('made', no_such_option=1)
        self.add_pre_set_parameters_callback(self.changed)
        self.publishers = []
        self.create_subscription(int, 'x', print, 10, no_such_keyword=1)

    def changed(self, params):
        return TransitionCallbackReturn.NOT_A_RESULT

def attach(node):
    node.add_pre_set_parameters_callback(print)
    QoSProfile(depth=1, no_such_field=2)
    ReliabilityPolicy.NOT_A_POLICY
    peer = rclpy.create_node('peer')
    peer.no_such_method()
    rclpy.no_such_function()
'''
    analysis = Analysis(source, 'made.py')
    text = '\n'.join(analysis.import_problems + analysis.node_problems +
                     analysis.variable_problems + analysis.other_problems)
    for expected in ('import NoSuchName', 'self.add_pre_set_parameters_callback',
                     "'no_such_option'", 'self.publishers', "'no_such_keyword'",
                     'NOT_A_RESULT', 'node.add_pre_set_parameters_callback', "'no_such_field'",
                     'NOT_A_POLICY', 'peer.no_such_method', 'rclpy.no_such_function'):
        assert expected in text, (expected, text)
    clean = Analysis('''
import rclpy
from rclpy.lifecycle import LifecycleNode
class Fine(LifecycleNode):
    def __init__(self):
        super().__init__('fine')
        self.add_on_set_parameters_callback(self.check)
        self.timer = self.create_timer(1.0, self.check)
    def check(self, params=None):
        self.get_logger().info('ok')
''', 'fine.py')
    assert not (clean.import_problems + clean.node_problems + clean.variable_problems +
                clean.other_problems)


# 1-3. the project's code ------------------------------------------------------------------------
def test_rclpy_imports_exist_in_humble(analyses):
    problems = [p for a in analyses for p in a.import_problems]
    assert not problems, report(problems)


def test_node_subclasses_use_humble_members(analyses):
    # The node must be found, or this test checks nothing.
    assert any('class PoseNode' in p.read_text() for p in runtime_sources())
    node_files = [a for a in analyses if any(
        isinstance(n, ast.ClassDef) and any(
            (k := a.kind(b, {})) and k[0] == 'class' and is_node_class(k[1]) for b in n.bases)
        for n in ast.walk(a.tree))]
    assert any(a.name.endswith('pose_node.py') for a in node_files)
    problems = [p for a in analyses for p in a.node_problems]
    assert not problems, report(problems)


def test_node_variables_use_humble_members(analyses):
    problems = [p for a in analyses for p in a.variable_problems]
    assert not problems, report(problems)


def test_other_rclpy_uses_exist_in_humble(analyses):
    problems = [p for a in analyses for p in a.other_problems]
    assert not problems, report(problems)
