"""`campaign export SLUG DIR` and `campaign import FILE`: the console's drafts as campaign
files and back, so the file workflow and the console share every campaign. Registered
on `campaign_app`."""

from __future__ import annotations

from pathlib import Path

from dispatcher.cli.app import campaign_app, fail, out, runtime
from dispatcher.errors import DispatcherError


@campaign_app.command("export")
def campaign_export(slug: str, folder: Path) -> None:
    """Write a campaign (a draft, or one already sent) as a campaign file with its
    templates into FOLDER."""
    from dispatcher.definition.campaign import CampaignSpec
    from dispatcher.definition.draft import Draft
    from dispatcher.delivery.control import find
    from dispatcher.store.models import CampaignState

    rt = runtime()
    try:
        campaign = find(rt.engine, slug)
    except DispatcherError as exc:
        fail(str(exc))
    if campaign.state == CampaignState.DRAFT:
        draft = Draft.from_json(campaign.spec.get("draft", {}))
    else:
        draft = Draft.from_spec(CampaignSpec.from_json(campaign.spec))
    path = draft.write(folder)
    out.print(f"[green]wrote[/] {path} and its templates", highlight=False)


@campaign_app.command("import")
def campaign_import(file: Path) -> None:
    """Make a draft of a campaign file (or replace the draft of its slug); the console
    shows its problems and sends it."""
    from dispatcher.definition.draft import read_file
    from dispatcher.queue.drafts import import_draft

    rt = runtime()
    try:
        draft = read_file(file)
        import_draft(rt.engine, draft)
    except DispatcherError as exc:
        fail(str(exc))
    out.print(f"[green]draft[/] {draft.slug} from {file}", highlight=False)
