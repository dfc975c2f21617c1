"""The payload variables of an execution, and the Slack message built from them."""


from actions.payloads import render, sample_context

from . import event_types

SEVERITY_EMOJI = {"INFO": ":information_source:", "WARN": ":warning:", "ERROR": ":rotating_light:"}


def sample_context_for(automation):
    """Sample values for a test or a preview of `automation`: its own team, scope, event type and
    metric; made-up names only where the scope leaves them open."""
    context = sample_context(automation.name)
    collection = automation.collection
    project = automation.project or (collection.project if collection else None)
    registry = automation.registry or (collection.registry if collection else None)
    if project or registry:
        context.update(project_name=project.name if project else "", registry_name=registry.name if registry else "")
    context.update(event_type=automation.event_type, entity_name=automation.team.name)
    event_types.get(automation.event_type).sample(automation, context)
    return context


def payload_context(execution):
    event, automation = execution.event, execution.automation
    version, run = event.version, event.run
    collection = version.collection if version else None
    context = {
        "event_type": automation.event_type,
        "event_author": event.author,
        "entity_name": automation.team.name,
        "project_name": event.project.name if event.project_id else "",
        "registry_name": event.registry.name if event.registry_id else "",
        "automation_name": automation.name,
        "event_url": event.object_url,
        "alias": "",
        "tag": "",
        "artifact_collection_name": collection.name if collection else "",
        "artifact_version": str(version.pk) if version else "",
        "artifact_version_string": version.version_string if version else "",
        "artifact_version_index": version.index if version else "",
        "artifact_metadata": version.metadata if version else {},
        "run_id": run.run_id if run else "",
        "run_name": run.name if run else "",
        "run_state": run.state if run else "",
        "metric_name": "",
        "metric_value": "",
        "metric_values": "",
        "metric_filter": "",
        **{name: "" for definition in event_types.REGISTRY.values() for name in definition.variables},
    }
    if event.sample:
        # A test of the automation: sample values, with what the sample event really has.
        context = {**sample_context_for(automation), **{k: v for k, v in context.items() if v not in ("", {}, None)}}
    context.update({k: v for k, v in execution.context.items() if k in context})
    return context


def slack_message(execution, context):
    """Block Kit blocks and the plain-text fallback for a Slack action."""
    config = execution.automation.action_config
    severity = config.get("severity") or "INFO"
    place = context["project_name"] or context["registry_name"]
    obj = context["artifact_version_string"] or (f"run {context['run_name']} ({context['run_id']})" if context["run_id"] else "")
    title = render(config.get("title") or "", context) or f"{context['event_type']} in {context['entity_name']}/{place}"
    message = render(config.get("message") or "", context)
    facts = [
        f"*Event:* {context['event_type']}",
        f"*Team:* {context['entity_name']}",
        f"*{'Registry' if context['registry_name'] else 'Project'}:* {place}",
        f"*Object:* <{context['event_url']}|{obj or 'open'}>",
        f"*By:* {context['event_author'] or 'unknown'}",
    ]
    if context.get("alias"):
        facts.append(f"*Alias:* {context['alias']}")
    if context.get("tag"):
        facts.append(f"*Tag:* {context['tag']}")
    if context.get("metric_filter"):
        facts.append(f"*Condition:* {context['metric_filter']} (value {context['metric_value']})")
    sentence = event_types.get(context["event_type"]).sentence(context)
    if sentence:
        facts.append(f"*What:* {sentence}")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{title}"[:150]}},
    ]
    if message:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": message[:3000]}})
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": fact[:2000]} for fact in facts[:10]]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"{SEVERITY_EMOJI[severity]} {severity} · automation *{context['automation_name']}* · Tripline"}]})
    text = f"[{severity}] {title}: {obj} by {context['event_author'] or 'unknown'} — {context['event_url']}"
    if message:
        text += f"\n{message}"
    return {"text": text, "blocks": blocks}


