"""Embedding map: UMAP of image and caption embeddings; select points to see their images and captions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app_support import figures, loading, widgets
from srem_core.projection import MAX_FIT_POINTS
from srem_core.runs import Run

COLOUR_CHOICES = {"clean_prob": "clean probability", "flag": "flag", "category": "category"}
SHOW_CHOICES = {"both": "images and captions", "image": "images only", "caption": "captions only"}
# Caption characters in a point's hover text. The hover text is most of the figure's size.
HOVER_CHARACTERS = 60
# Most selected points whose images and captions are listed below the map.
SELECTION_SHOWN = 30


@st.cache_data(hash_funcs=loading.HASH_FUNCS, show_spinner=False, max_entries=8)
def map_points(run: Run, colour_by: str, show: str) -> pd.DataFrame:
    """Build the table of map points: coordinates, kind, row, colour value and hover text per point."""
    coordinates = loading.map_coordinates(run)
    scores, n_images = run.scores, len(run.image_embeddings)
    noise = loading.image_noise(run).reindex(range(n_images))
    first_caption = scores.drop_duplicates("image_index").set_index("image_index")
    first_caption = first_caption.reindex(range(n_images))
    if colour_by == "clean_prob":
        image_colour, caption_colour = noise["min_clean_prob"].to_numpy(), scores["clean_prob"].to_numpy()
    elif colour_by == "flag":
        image_colour = np.where(noise["n_flagged"].fillna(0).to_numpy() > 0, "has a flagged caption", "no flagged caption")
        caption_colour = np.where(scores["is_noisy"].to_numpy(), "flagged", "kept")
    else:
        image_colour, caption_colour = first_caption["category"].to_numpy(), scores["category"].to_numpy()
    images = pd.DataFrame({
        "x": coordinates[:n_images, 0], "y": coordinates[:n_images, 1], "kind": "image", "row": np.arange(n_images),
        "colour": image_colour,
        "hover": "image " + run.images["image_id"].astype(str) + "<br>" + first_caption["caption"].fillna("").str[:HOVER_CHARACTERS],
    })
    captions = pd.DataFrame({
        "x": coordinates[n_images:, 0], "y": coordinates[n_images:, 1], "kind": "caption", "row": np.arange(len(scores)),
        "colour": caption_colour,
        "hover": scores["caption"].str[:HOVER_CHARACTERS] + "<br>clean prob " + scores["clean_prob"].round(2).astype(str),
    })
    parts = {"both": [images, captions], "image": [images], "caption": [captions]}[show]
    return pd.concat(parts, ignore_index=True)


@st.cache_data(hash_funcs=loading.HASH_FUNCS, show_spinner=False, max_entries=16)
def map_figure(run: Run, colour_by: str, show: str, link_pair: str):
    points = map_points(run, colour_by, show)
    links = []
    matches = np.flatnonzero(run.scores["pair_id"].to_numpy() == link_pair) if link_pair else []
    if len(matches):
        coordinates, position = loading.map_coordinates(run), int(matches[0])
        image_xy = coordinates[int(run.scores["image_index"].iat[position])]
        caption_xy = coordinates[len(run.image_embeddings) + position]
        links.append((*map(float, image_xy), *map(float, caption_xy)))
    mode = "continuous" if colour_by == "clean_prob" else "categorical"
    # A dict keeps its key order through the cache's pickling, and a go.Figure does not. The chart's
    # element id depends on that order, so a figure would lose the first selection made on it.
    return figures.embedding_map(points, mode, links).to_dict()


def set_link(pair_id: str) -> None:
    st.session_state["link_pair"] = pair_id
    # Drawing the link changes the figure, which clears the chart's selection; keep the list shown.
    st.session_state["keep_selection"] = True


def show_selection(run: Run, selected: list[dict]) -> None:
    """List the images and captions of the selected points, each with a button to link its pair."""
    noise = loading.image_noise(run)
    clean_prob = run.scores["clean_prob"].to_numpy()

    def noisiness(point: dict) -> float:
        kind, row = figures.decode_map_point(point["customdata"])
        if kind == "caption":
            return float(clean_prob[row])
        return float(noise["min_clean_prob"].get(row, 1.0))

    selected = sorted(selected, key=noisiness)
    listed = f"; the {SELECTION_SHOWN} with the lowest clean probability are listed." if len(selected) > SELECTION_SHOWN else "."
    st.markdown(f"**{len(selected):,} points selected**{listed}")
    for number, point in enumerate(selected[:SELECTION_SHOWN]):
        kind, row = figures.decode_map_point(point["customdata"])
        columns = st.columns([1, 5, 1])
        if kind == "image":
            captions = run.scores[run.scores["image_index"] == row]
            path = loading.image_path(run, row)
            if path:
                columns[0].image(path, width=80)
            columns[1].markdown(f"Image `{run.images['image_id'].iat[row]}`: " + " · ".join(captions["caption"].head(3)))
            if row in noise.index:
                columns[1].caption(widgets.image_noise_line(noise.loc[row]))
            pair_id = captions["pair_id"].iat[0] if len(captions) else None
        else:
            pair = run.scores.iloc[row]
            path = loading.image_path(run, pair["image_index"])
            if path:
                columns[0].image(path, width=80)
            columns[1].markdown(f"Caption: **{pair['caption']}**")
            columns[1].caption(widgets.pair_line(pair))
            pair_id = pair["pair_id"]
        if pair_id is not None:
            columns[2].button("Link", key=f"link_{number}_{pair_id}", on_click=set_link, args=(pair_id,),
                              help="Draw a line between this pair's image and caption on the map.")


run = widgets.current_run()
n_images, n_pairs = len(run.image_embeddings), len(run.text_embeddings)
has_category = "category" in run.scores and run.scores["category"].notna().any()

st.title("Embedding map")
st.caption(
    f"UMAP of {n_images:,} image and {n_pairs:,} caption embeddings in one map. Above {MAX_FIT_POINTS:,} points, "
    f"UMAP is fitted on a random sample of {MAX_FIT_POINTS:,} and places the rest with its transform. At most "
    f"{figures.MAX_SCATTER_POINTS:,} points are drawn (a random sample). Select points by clicking, or with the "
    "box and lasso tools, to list their images and captions."
)
columns = st.columns([2, 2, 3])
colour_options = [name for name in COLOUR_CHOICES if name != "category" or has_category]
colour_by = columns[0].radio("Colour by", colour_options, format_func=COLOUR_CHOICES.get, key="colour_by", horizontal=True)
show = columns[1].radio("Show", list(SHOW_CHOICES), format_func=SHOW_CHOICES.get, key="map_show", horizontal=True)
link_pair = columns[2].text_input("Link a pair's image and caption (pair id)", key="link_pair").strip()
if link_pair and link_pair not in set(run.scores["pair_id"]):
    columns[2].warning(f"No pair has the id `{link_pair}`.")

with st.spinner("Computing the UMAP map (only once per run; it is saved in the run's index/ folder)…", show_time=True):
    figure = map_figure(run, colour_by, show, link_pair)

event = st.plotly_chart(figure, key="embedding_map", on_select="rerun", selection_mode=("points", "box", "lasso"))
selected = [point for point in event.selection.points if point.get("customdata") is not None]
if not selected and st.session_state.pop("keep_selection", False):
    selected = st.session_state.get("map_selection", [])
st.session_state["map_selection"] = selected
if selected:
    show_selection(run, selected)
else:
    st.info("No points selected. Click a point, or draw a box or lasso around several.")
