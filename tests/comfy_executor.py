"""A small stand-in for the parts of ComfyUI the pack's tests need (no ComfyUI installed).

* :func:`node_info` / :func:`object_info`: what ``GET /object_info`` reports
  for V1 node classes (``input``, ``input_order``, ``output``, ...).
* :func:`widget_list`: the widgets the editor creates for a node, in order,
  including the extra ``control_after_generate`` / ``control_filter_list`` /
  ``upload`` widgets (ComfyUI reference, section 7, rules 2-3).
* :func:`validate_workflow`: a UI-format workflow against ``object_info``:
  node types exist, ``widgets_values`` count and types, links connect
  matching types.
* :func:`ui_to_api`: UI format -> API prompt by the editor's rules (section 7).
* :func:`validate_prompt` and :func:`execute`: the server's input validation
  and a topological executor that calls the node functions, with hidden
  inputs, ``{"ui", "result"}`` returns and output nodes.

``CORE_NODES`` describes the core nodes the shipped workflows use, as
ComfyUI 0.3.64 declares them (file lists are given by the test).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
FRONTEND_ONLY = ("Note", "MarkdownNote", "Reroute", "PrimitiveNode")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image"]


def core_nodes(images: list[str], text_encoders: list[str]) -> dict[str, dict]:
    """``/object_info`` entries of the core nodes the shipped workflows use (ComfyUI 0.3.64)."""
    return {
        "LoadImage": {
            "input": {"required": {"image": [sorted(images), {"image_upload": True}]}},
            "input_order": {"required": ["image"]},
            "output": ["IMAGE", "MASK"], "output_is_list": [False, False], "output_name": ["IMAGE", "MASK"],
            "name": "LoadImage", "display_name": "Load Image", "category": "image", "output_node": False,
        },
        "CLIPLoader": {
            "input": {"required": {"clip_name": [list(text_encoders)], "type": [CLIP_TYPES]},
                      "optional": {"device": [["default", "cpu"], {"advanced": True}]}},
            "input_order": {"required": ["clip_name", "type"], "optional": ["device"]},
            "output": ["CLIP"], "output_is_list": [False], "output_name": ["CLIP"],
            "name": "CLIPLoader", "display_name": "Load CLIP", "category": "advanced/loaders", "output_node": False,
        },
    }


# ---------------------------------------------------------------------------
# object_info


def _spec_list(spec):
    if isinstance(spec, str):  # hidden inputs: "PROMPT", "EXTRA_PNGINFO", ...
        return spec
    spec = list(spec)
    if len(spec) == 1:
        return spec
    return [spec[0], dict(spec[1])]


def node_info(name: str, cls, display_name: str | None = None) -> dict:
    inputs = cls.INPUT_TYPES()
    returns = tuple(cls.RETURN_TYPES)
    return {
        "input": {section: {k: _spec_list(v) for k, v in entries.items()} for section, entries in inputs.items()},
        "input_order": {section: list(entries) for section, entries in inputs.items()},
        "output": list(returns),
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(returns))),
        "output_name": list(getattr(cls, "RETURN_NAMES", returns)),
        "name": name,
        "display_name": display_name or name,
        "description": getattr(cls, "DESCRIPTION", ""),
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }


def object_info(mappings: Mapping[str, type], display: Mapping[str, str] | None = None,
                extra: Mapping[str, dict] | None = None) -> dict[str, dict]:
    info = {name: node_info(name, cls, (display or {}).get(name)) for name, cls in mappings.items()}
    info.update(copy.deepcopy(dict(extra or {})))
    return info


# ---------------------------------------------------------------------------
# Widgets


def input_kind(spec) -> str:
    """``"COMBO"`` for a list of options, else the type string."""
    t = spec[0]
    if isinstance(t, (list, tuple)):
        return "COMBO"
    return str(t)


def options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_values(spec) -> list:
    t = spec[0]
    if isinstance(t, (list, tuple)):
        return list(t)
    return list(options(spec).get("options", []))


def widget_list(info: dict) -> list[tuple[str, str, Any]]:
    """``[(widget name, kind, spec), ...]`` in the editor's order; extra widgets have kind
    ``"control_after_generate"``, ``"control_filter_list"`` or ``"upload"`` and spec None."""
    widgets, upload = [], False
    for section in ("required", "optional"):
        for name in info["input_order"].get(section, []):
            spec = info["input"][section][name]
            kind = input_kind(spec)
            opts = options(spec)
            if kind not in WIDGET_TYPES or opts.get("forceInput") or (section == "optional" and opts.get("defaultInput")):
                continue
            widgets.append((name, kind, spec))
            control = opts.get("control_after_generate")
            if kind == "INT" and (control or (control is None and name in ("seed", "noise_seed"))):
                widgets.append(("control_after_generate", "control_after_generate", None))
            elif kind == "COMBO" and control:
                widgets.append(("control_after_generate", "control_after_generate", None))
                widgets.append(("control_filter_list", "control_filter_list", None))
            if section == "required" and kind == "COMBO" and any(opts.get(k) for k in UPLOAD_OPTIONS):
                upload = True
    if upload:
        widgets.append(("upload", "upload", None))
    return widgets


def default_value(kind: str, spec) -> Any:
    opts = options(spec) if spec is not None else {}
    if "default" in opts:
        return opts["default"]
    if kind == "COMBO":
        values = combo_values(spec)
        return values[0] if values else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def check_value(kind: str, spec, value) -> str | None:
    """A problem with a widget value, or None."""
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expects an integer, got {value!r}"
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expects a number, got {value!r}"
    elif kind == "STRING":
        if not isinstance(value, str):
            return f"expects a string, got {value!r}"
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            return f"expects true/false, got {value!r}"
    elif kind == "COMBO":
        if value not in combo_values(spec):
            return f"value {value!r} is not one of {combo_values(spec)}"
    elif kind == "control_after_generate":
        if value not in CONTROL_VALUES + ("increment-wrap",):
            return f"control_after_generate value {value!r} is not one of {CONTROL_VALUES}"
    elif kind == "control_filter_list":
        if not isinstance(value, str):
            return f"control_filter_list must be a string, got {value!r}"
    elif kind == "upload":
        if value not in ("image", "video", "animated_image"):
            return f"upload widget value {value!r} is not 'image'"
    if kind in ("INT", "FLOAT"):
        opts = options(spec)
        if "min" in opts and value < opts["min"]:
            return f"{value} is smaller than min {opts['min']}"
        if "max" in opts and value > opts["max"]:
            return f"{value} is bigger than max {opts['max']}"
    return None


def types_match(output_type: str, input_type: str) -> bool:
    """The server's rule: two type strings match if they share a comma-separated member."""
    if output_type == "*" and input_type == "*":
        return True
    return bool(set(output_type.split(",")) & set(input_type.split(",")))


def _input_spec(info: dict, name: str):
    for section in ("required", "optional"):
        if name in info["input"].get(section, {}):
            return section, info["input"][section][name]
    return None, None


# ---------------------------------------------------------------------------
# UI workflow checks and conversion


def validate_workflow(workflow: dict, info: Mapping[str, dict]) -> list[str]:
    """Problems a UI-format workflow has against ``info`` (empty list: it loads with no red nodes)."""
    problems: list[str] = []
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    for node in workflow.get("nodes", []):
        label = f"node {node['id']} ({node.get('type')})"
        t = node.get("type")
        if t in FRONTEND_ONLY:
            continue
        if t not in info:
            problems.append(f"{label}: node type does not exist")
            continue
        ni = info[t]
        widgets = widget_list(ni)
        values = node.get("widgets_values", [])
        if isinstance(values, dict):
            for name, value in values.items():
                match = [w for w in widgets if w[0] == name]
                if not match:
                    problems.append(f"{label}: widget {name!r} does not exist")
                elif (p := check_value(match[0][1], match[0][2], value)):
                    problems.append(f"{label}: widget {name!r} {p}")
        else:
            if len(values) != len(widgets):
                problems.append(f"{label}: {len(values)} widget values for {len(widgets)} widgets "
                                f"{[w[0] for w in widgets]}")
            for (name, kind, spec), value in zip(widgets, values):
                if (p := check_value(kind, spec, value)):
                    problems.append(f"{label}: widget {name!r} {p}")
        outputs = node.get("outputs", [])
        if [o.get("type") for o in outputs] != ni["output"]:
            problems.append(f"{label}: outputs {[o.get('type') for o in outputs]} differ from {ni['output']}")
        for inp in node.get("inputs", []):
            section, spec = _input_spec(ni, inp["name"])
            if spec is None:
                problems.append(f"{label}: input {inp['name']!r} does not exist")
                continue
            if inp.get("type") != input_kind(spec):
                problems.append(f"{label}: input {inp['name']!r} has type {inp.get('type')!r}, "
                                f"declared {input_kind(spec)!r}")
        required_sockets = [name for name, spec in ni["input"].get("required", {}).items()
                            if input_kind(spec) not in WIDGET_TYPES or options(spec).get("forceInput")]
        linked = {inp["name"] for inp in node.get("inputs", []) if inp.get("link") is not None}
        for name in required_sockets:
            if name not in linked:
                problems.append(f"{label}: required input {name!r} is not connected")
    links = workflow.get("links", [])
    for link in links:
        link_id, origin, origin_slot, target, target_slot, link_type = link[:6]
        if origin not in nodes or target not in nodes:
            problems.append(f"link {link_id}: connects missing node {origin} or {target}")
            continue
        o, tnode = nodes[origin], nodes[target]
        if tnode["type"] in FRONTEND_ONLY or o["type"] in FRONTEND_ONLY:
            continue
        out_type = info[o["type"]]["output"][origin_slot] if o["type"] in info else None
        inp = tnode.get("inputs", [])[target_slot] if target_slot < len(tnode.get("inputs", [])) else None
        if inp is None or inp.get("link") != link_id:
            problems.append(f"link {link_id}: target slot {target_slot} of node {target} does not refer back to it")
            continue
        if link_id not in (o.get("outputs", [])[origin_slot].get("links") or []):
            problems.append(f"link {link_id}: origin slot {origin_slot} of node {origin} does not list it")
        if tnode["type"] in info:
            _, spec = _input_spec(info[tnode["type"]], inp["name"])
            in_type = None if spec is None else input_kind(spec)
            if out_type is None or in_type is None or not types_match(out_type, in_type) or link_type != out_type:
                problems.append(f"link {link_id}: {o['type']}.{origin_slot} ({out_type}) -> "
                                f"{tnode['type']}.{inp['name']} ({in_type}) do not match (link says {link_type})")
    return problems


def ui_to_api(workflow: dict, info: Mapping[str, dict]) -> dict:
    """Convert a UI workflow to the API prompt the editor would send (ComfyUI reference, section 7)."""
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    links = {link[0]: link for link in workflow.get("links", [])}

    def source(link_id, want_type=None):
        """Follow a link upstream through reroutes and bypassed nodes -> ("link", id, slot) / ("value", v) / None."""
        link = links.get(link_id)
        if link is None:
            return None
        origin = nodes.get(link[1])
        if origin is None or origin.get("mode") == 2:
            return None
        if origin["type"] == "Reroute":
            inp = (origin.get("inputs") or [{}])[0]
            return source(inp.get("link"), want_type)
        if origin["type"] == "PrimitiveNode":
            return ("value", (origin.get("widgets_values") or [None])[0])
        if origin.get("mode") == 4:  # bypassed: the input of the matching type
            out_type = origin["outputs"][link[2]]["type"]
            for inp in origin.get("inputs", []):
                if inp.get("link") is not None and types_match(inp.get("type", ""), out_type):
                    return source(inp["link"], want_type)
            return None
        return ("link", str(origin["id"]), link[2])

    prompt = {}
    for node in workflow.get("nodes", []):
        if node["type"] in FRONTEND_ONLY or node.get("mode") in (2, 4):
            continue
        ni = info[node["type"]]
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values", [])
        widgets = widget_list(ni)
        for i, (name, kind, spec) in enumerate(widgets):
            if kind in ("control_after_generate", "control_filter_list", "upload"):
                continue
            if isinstance(values, dict):
                value = values.get(name, default_value(kind, spec))
            else:
                value = values[i] if i < len(values) else default_value(kind, spec)
            if isinstance(value, list):
                value = {"__value__": value}
            inputs[name] = value
        for inp in node.get("inputs", []):
            if inp.get("link") is None:
                continue
            src = source(inp["link"])
            name = inp["widget"]["name"] if inp.get("widget") else inp["name"]
            if src is None:
                inputs.pop(name, None)
            elif src[0] == "value":
                inputs[name] = src[1]
            else:
                inputs[name] = [src[1], src[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or ni.get("display_name", node["type"])}}
    return prompt


# ---------------------------------------------------------------------------
# Server-side validation and execution


class PromptError(Exception):
    def __init__(self, node_errors: dict):
        super().__init__(f"prompt failed validation: {node_errors}")
        self.node_errors = node_errors


def _validate_inputs_args(cls) -> set[str] | None:
    fn = getattr(cls, "VALIDATE_INPUTS", None)
    if fn is None:
        return None
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return {"*"}
    return set(params)


def validate_prompt(prompt: dict, mappings: Mapping[str, type], info: Mapping[str, dict]) -> dict:
    """The server's checks (types, required inputs, ranges, choices, VALIDATE_INPUTS) -> node_errors."""
    errors: dict[str, list[str]] = {}
    for node_id, node in prompt.items():
        problems = []
        t = node["class_type"]
        if t not in info:
            errors[node_id] = [f"node type {t} does not exist"]
            continue
        ni = info[t]
        custom = _validate_inputs_args(mappings[t]) if t in mappings else None
        constants = {}
        for section in ("required", "optional"):
            for name, spec in ni["input"].get(section, {}).items():
                if name not in node["inputs"]:
                    if section == "required":
                        problems.append(f"required_input_missing: {name}")
                    continue
                value = node["inputs"][name]
                kind = input_kind(spec)
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    origin = prompt.get(value[0])
                    if origin is None:
                        problems.append(f"{name}: linked to missing node {value[0]}")
                        continue
                    out_type = info[origin["class_type"]]["output"][value[1]]
                    if not types_match(out_type, kind):
                        problems.append(f"return_type_mismatch: {name} ({kind}) <- {out_type}")
                    continue
                if isinstance(value, dict) and "__value__" in value:
                    value = value["__value__"]
                constants[name] = value
                if custom and ("*" in custom or name in custom):
                    continue
                if kind not in WIDGET_TYPES:
                    problems.append(f"{name}: socket input {kind} given a constant {value!r}")
                elif (p := check_value(kind, spec, value)):
                    problems.append(f"{name}: {p}")
        if custom:
            args = constants if "*" in custom else {k: v for k, v in constants.items() if k in custom}
            result = mappings[t].VALIDATE_INPUTS(**args)
            if result is not True:
                problems.append(f"custom_validation_failed: {result}")
        if problems:
            errors[node_id] = problems
    return errors


def execute(prompt: dict, mappings: Mapping[str, type], info: Mapping[str, dict], *,
            extra_pnginfo: dict | None = None) -> dict:
    """Validate and run every output node's ancestors; -> {"outputs": {id: ui}, "results": {id: tuple}}."""
    errors = validate_prompt(prompt, mappings, info)
    if errors:
        raise PromptError(errors)
    results: dict[str, tuple] = {}
    uis: dict[str, dict] = {}

    def run(node_id: str, stack=()):
        if node_id in results:
            return results[node_id]
        if node_id in stack:
            raise RuntimeError(f"cycle at node {node_id}")
        node = prompt[node_id]
        cls = mappings[node["class_type"]]
        kwargs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                kwargs[name] = run(value[0], stack + (node_id,))[value[1]]
            else:
                kwargs[name] = value["__value__"] if isinstance(value, dict) and "__value__" in value else value
        hidden = cls.INPUT_TYPES().get("hidden", {})
        for name, kind in hidden.items():
            kwargs[name] = {"PROMPT": prompt, "EXTRA_PNGINFO": extra_pnginfo, "UNIQUE_ID": node_id}.get(kind)
        with torch.inference_mode():  # as ComfyUI runs every node
            out = getattr(cls(), cls.FUNCTION)(**kwargs)
        if isinstance(out, dict):
            if "ui" in out:
                uis[node_id] = out["ui"]
            out = out.get("result", ())
        out = tuple(out) if out is not None else ()
        if len(out) != len(cls.RETURN_TYPES):
            raise RuntimeError(f"{node['class_type']} returned {len(out)} values for {len(cls.RETURN_TYPES)} outputs")
        results[node_id] = out
        return out

    for node_id, node in prompt.items():
        if info[node["class_type"]]["output_node"]:
            run(node_id)
    return {"outputs": uis, "results": results}
