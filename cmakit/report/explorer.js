// The explorer page's logic (cmakit.report.explorer): every control calls update(ctx), which
// copies the precomputed columns of the chosen model / view / alpha into the drawn ones, colours
// the images by score, applies the threshold at the chosen ID recall, the search and the
// selection, draws pairs and paths, fills the side panels and writes the page's own report
// (#explorer-summary). Nothing is computed that Python did not precompute, except the threshold
// (from the ID images' scores shown) and what depends on the selection.
window.cmakitExplorer = (function () {
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
  const report = {};
  let tips = null;  // the hover templates as built, with their %SCORE% placeholder

  // group index -> {uri, cols, n} of its sprite sheet (a ColumnDataSource in the page)
  function atlasOf(ctx, k) {
    const d = ctx.atlases.data, i = Array.from(d.group).indexOf(k);
    return i < 0 ? null : {uri: d.uri[i], cols: d.cols[i], n: d.n[i]};
  }

  function nearestAlpha(alphas, value) {
    let a = 0;
    for (let i = 0; i < alphas.length; i++) {
      if (Math.abs(alphas[i] - value) < Math.abs(alphas[a] - value)) { a = i; }
    }
    return a;
  }

  // The largest t with at least `recall` of the ID scores >= t (cmakit.core.metrics, "threshold").
  function threshold(idScores, recall) {
    const desc = Array.from(idScores).filter(Number.isFinite).sort((p, q) => q - p);
    if (desc.length === 0) { return NaN; }
    const k = Math.max(1, Math.ceil(Math.round(recall * desc.length * 1e9) / 1e9));
    return desc[Math.min(k, desc.length) - 1];
  }

  function colourOf(palette, lo, hi, v) {
    if (!Number.isFinite(v)) { return 0xbbbbbbff; }
    const f = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    return palette[Math.max(0, Math.min(palette.length - 1, Math.round(f * (palette.length - 1))))];
  }

  function matches(label, query) {
    return query.length > 0 && String(label).toLowerCase().includes(query);
  }

  function thumbHtml(ctx, k, i, size) {
    const t = atlasOf(ctx, k);
    if (!t) { return ""; }
    const cols = t.cols, rows = Math.ceil(t.n / cols);
    const x = (i % cols) * size, y = Math.floor(i / cols) * size;
    return `<div class="t${k}" title="${esc(ctx.sources[k].data.label[i])}" style="width:${size}px;height:${size}px;` +
      `background-position:-${x}px -${y}px;background-size:${cols * size}px ${rows * size}px"></div>`;
  }

  function atlasStyle(ctx, used) {
    return "<style>" + used.map((k) => `.t${k}{display:inline-block;margin:1px;image-rendering:pixelated;` +
      `background-image:url(${atlasOf(ctx, k).uri})}`).join("") + "</style>";
  }

  function copyColumns(ctx, m, v, a, sc) {
    for (const s of ctx.sources) {
      const d = s.data;
      d.x = d[`x_${m}_${v}_${a}`];
      d.y = d[`y_${m}_${v}_${a}`];
      if ("score" in d) { d.score = d[`s${Math.max(sc, 0)}_${m}_${a}`]; }
    }
  }

  function style(ctx, sc, t, query) {
    let lo = Infinity, hi = -Infinity;
    ctx.sources.forEach((s, k) => {
      if (sc >= 0 && ctx.kinds[k] !== "prompt" && ctx.kinds[k] !== "neg") {
        for (const v of s.data.score) { if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
      }
    });
    const out = {passed: {}, n: {}, matches: {}};
    ctx.sources.forEach((s, k) => {
      const d = s.data, kind = ctx.kinds[k], image = kind === "id" || kind === "ood";
      const base = ctx.fills[k], n = d.x.length;
      const size = kind === "prompt" ? 16 : 7, alpha = kind === "prompt" ? 0.9 : 0.55;
      let passed = 0, hits = 0;
      for (let i = 0; i < n; i++) {
        let fill = base, fa = alpha, sz = size, la = 0;
        if (sc >= 0 && image) {
          fill = colourOf(ctx.palette, lo, hi, d.score[i]);
          if (kind === "ood") {
            const through = d.score[i] >= t;
            passed += through ? 1 : 0;
            [fa, sz, la] = through ? [0.95, size * 1.4, 1] : [0.15, size * 0.8, 0];
          }
        }
        if (query.length > 0) {
          const hit = matches(d.label[i], query);
          hits += hit ? 1 : 0;
          [fa, sz, la] = hit ? [0.95, size * 1.5, 1] : [0.06, sz, 0];
        }
        d.fill[i] = fill; d.fa[i] = fa; d.sz[i] = sz; d.la[i] = la;
      }
      if (kind === "ood" && sc >= 0) { out.passed[ctx.names[k]] = passed; out.n[ctx.names[k]] = n; }
      if (query.length > 0) { out.matches[ctx.names[k]] = hits; }
    });
    ctx.mapper.low = Number.isFinite(lo) ? lo : 0;
    ctx.mapper.high = Number.isFinite(hi) ? hi : 1;
    return out;
  }

  function pairs(ctx) {
    const seg = {x0: [], y0: [], x1: [], y1: []};
    if (ctx.pairs.active) {
      const k = ctx.kinds.indexOf("id"), p = ctx.kinds.indexOf("prompt");
      if (k >= 0 && p >= 0) {
        const d = ctx.sources[k].data, t = ctx.sources[p].data, sel = ctx.sources[k].selected.indices;
        const rows = sel.length > 0 ? sel : d.x.map((_, i) => i);
        for (const i of rows) {
          const j = d.pair[i];
          if (j >= 0) { seg.x0.push(d.x[i]); seg.y0.push(d.y[i]); seg.x1.push(t.x[j]); seg.y1.push(t.y[j]); }
        }
      }
    }
    ctx.segments.data = seg;
    return seg.x0.length;
  }

  function paths(ctx, v, a) {
    const out = {xs: [], ys: [], color: []}, ends = {x: [], y: [], color: []};
    if (ctx.paths.active && ctx.n_models > 1) {
      ctx.sources.forEach((s, k) => {
        if (ctx.kinds[k] !== "id" && ctx.kinds[k] !== "ood") { return; }
        const d = s.data, sel = s.selected.indices;
        const rows = (sel.length > 0 ? sel : d.x.map((_, i) => i).slice(0, ctx.path_default)).slice(0, ctx.max_paths);
        for (const i of rows) {
          const xs = [], ys = [];
          for (let m = 0; m < ctx.n_models; m++) { xs.push(d[`x_${m}_${v}_${a}`][i]); ys.push(d[`y_${m}_${v}_${a}`][i]); }
          out.xs.push(xs); out.ys.push(ys); out.color.push(ctx.colors[k]);
          ends.x.push(xs[xs.length - 1]); ends.y.push(ys[ys.length - 1]); ends.color.push(ctx.colors[k]);
        }
      });
    }
    ctx.paths_src.data = out;
    ctx.path_ends.data = ends;  // the last model's position: where each path leads
    return out.xs.length;
  }

  function histogram(ctx, sc, t) {
    const sel = [], rest = [];
    let anySelected = false;
    ctx.sources.forEach((s) => { anySelected = anySelected || s.selected.indices.length > 0; });
    ctx.sources.forEach((s, k) => {
      if (ctx.kinds[k] !== "id" && ctx.kinds[k] !== "ood") { return; }
      const chosen = new Set(s.selected.indices);
      s.data.score.forEach((v, i) => {
        const inSel = anySelected ? chosen.has(i) : ctx.kinds[k] === "id";
        (inSel ? sel : rest).push(v);
      });
    });
    const all = sel.concat(rest).filter(Number.isFinite);
    const lo = Math.min(...all), hi = Math.max(...all), bins = 30;
    const w = hi > lo ? (hi - lo) / bins : 1;
    const edges = Array.from({length: bins + 1}, (_, i) => lo + i * w);
    const count = (xs) => {
      const c = new Array(bins).fill(0);
      for (const v of xs) { if (Number.isFinite(v)) { c[Math.min(bins - 1, Math.floor((v - lo) / w))] += 1; } }
      return c.map((x) => (xs.length ? x / xs.length : 0));
    };
    const quads = (c) => ({left: edges.slice(0, -1), right: edges.slice(1), top: c, bottom: c.map(() => 0)});
    ctx.hist_sel.data = quads(count(sel));
    ctx.hist_rest.data = quads(count(rest));
    ctx.span.location = Number.isFinite(t) ? t : null;
    ctx.hist_items[0].label = {value: anySelected ? "the rest" : "OoD images"};
    ctx.hist_items[1].label = {value: anySelected ? "selected" : "ID images"};
    ctx.hist_fig.title.text = `${ctx.score_labels[Math.max(sc, 0)]}: ` +
      (anySelected ? `selected (${sel.length}) vs the rest (${rest.length})` : `ID images (${sel.length}) vs OoD (${rest.length})`);
    return {selected: sel.length, rest: rest.length};
  }

  function panel(ctx) {
    const counts = {}, labels = {}, thumbs = [], used = [];
    let total = 0;
    ctx.sources.forEach((s, k) => {
      const sel = s.selected.indices;
      if (sel.length === 0) { return; }
      counts[ctx.names[k]] = sel.length;
      total += sel.length;
      for (const i of sel) { labels[s.data.label[i]] = (labels[s.data.label[i]] || 0) + 1; }
      if (atlasOf(ctx, k)) {
        used.push(k);
        for (const i of sel.slice(0, Math.max(0, ctx.max_thumbs - thumbs.length))) { thumbs.push(thumbHtml(ctx, k, i, 40)); }
      }
    });
    if (total === 0) {
      ctx.panel.text = "<i>Box-select or lasso points (toolbar) to list them here and compare their scores with the rest.</i>";
      return counts;
    }
    const top = Object.entries(labels).sort((p, q) => q[1] - p[1]).slice(0, 10);
    ctx.panel.text = `<b>${total} selected</b>: ` + Object.entries(counts).map(([g, c]) => `${esc(g)} ${c}`).join(" · ") +
      `<br><b>labels</b>: ` + top.map(([l, c]) => `${esc(l)} (${c})`).join(", ") +
      (thumbs.length ? atlasStyle(ctx, used) + `<div style="line-height:0">${thumbs.join("")}</div>` : "");
    return counts;
  }

  // "name (cos), ..." of a point's nearest texts: columns <p>i<j>_<m> (rows) and <p>c<j>_<m>
  function nearest(d, p, m, i, names) {
    const out = [];
    for (let j = 0; `${p}i${j}_${m}` in d; j++) {
      const r = d[`${p}i${j}_${m}`][i];
      out.push(`${r < names.length ? names[r] : "#" + r} (${Number(d[`${p}c${j}_${m}`][i]).toFixed(2)})`);
    }
    return out.length ? out.join(", ") : "(none)";
  }

  function details(ctx, m, a, sc) {
    let shown = null;
    let selected = 0;
    ctx.sources.forEach((s, k) => {
      selected += s.selected.indices.length;
      if ((ctx.kinds[k] === "id" || ctx.kinds[k] === "ood") && s.selected.indices.length > 0) { shown = [k, s.selected.indices[0]]; }
    });
    if (shown === null || selected !== 1) {
      ctx.details.text = "<i>Tap an image to list its nearest ID prompts and negative labels.</i>";
      return;
    }
    const [k, i] = shown, d = ctx.sources[k].data;
    const img = atlasOf(ctx, k) ? atlasStyle(ctx, [k]) + `<div style="float:left;margin-right:8px">${thumbHtml(ctx, k, i, 96)}</div>` : "";
    const sc_text = ctx.score_labels.map((lab, j) => `${lab} ${Number(d[`s${j}_${m}_${a}`][i]).toFixed(3)}`).join(" · ");
    ctx.details.text = `${img}<b>${esc(ctx.names[k])}</b>: ${esc(d.label[i])}<br>${esc(ctx.model.value)}, α = ${ctx.alphas[a]}<br>${sc_text}` +
      `<br style="clear:both"><b>nearest ID prompts</b>: ${esc(nearest(d, "n", m, i, ctx.id_names))}` +
      `<br><b>nearest negative labels</b>: ${esc(nearest(d, "g", m, i, ctx.neg_names))}`;
  }

  function writeReport() {
    let el = document.getElementById("explorer-summary");
    if (el === null) {
      el = document.createElement("script");
      el.type = "application/json";
      el.id = "explorer-summary";
      document.body.appendChild(el);
    }
    el.textContent = JSON.stringify(report);
  }

  function update(ctx, origin) {
    const started = performance.now();
    const m = Math.max(0, ctx.model.options.indexOf(ctx.model.value));
    if (origin === ctx.paths && ctx.paths.active && ctx.shared_view >= 0 && ctx.view.active !== ctx.shared_view) {
      ctx.view.active = ctx.shared_view;  // paths are drawn in the axes shared by all models
      return;  // the view's own callback updates the page
    }
    const v = ctx.view.active, a = nearestAlpha(ctx.alphas, ctx.slider.value);
    const sc = ctx.score_labels.indexOf(ctx.colour.value);
    const query = String(ctx.search.value_input || ctx.search.value || "").trim().toLowerCase();
    copyColumns(ctx, m, v, a, sc);
    const id = ctx.kinds.indexOf("id");
    const t = sc >= 0 && id >= 0 ? threshold(ctx.sources[id].data.score, ctx.recall.value) : NaN;
    const st = style(ctx, sc, t, query);
    for (const s of ctx.sources) { s.change.emit(); }
    const n_pairs = pairs(ctx), n_paths = paths(ctx, v, a);
    const hist = histogram(ctx, sc, t);
    const selected = panel(ctx);
    details(ctx, m, a, sc);
    const lab = ctx.score_labels[Math.max(sc, 0)];
    tips = tips || ctx.hovers.map((h, k) => (atlasOf(ctx, k) ? h.tooltips.replace("%ATLAS%", atlasOf(ctx, k).uri) : h.tooltips));
    ctx.hovers.forEach((h, k) => { const tip = tips[k].replace("%SCORE%", esc(lab)); if (h.tooltips !== tip) { h.tooltips = tip; } });
    for (const key of ctx.colorbar_alphas) { ctx.colorbar[key] = sc >= 0 ? 1 : 0; }
    ctx.span.visible = sc >= 0;
    const lines = Object.keys(st.passed).map((g) => `${esc(g)}: <b>${st.passed[g]}</b> of ${st.n[g]} (${(100 * st.passed[g] / Math.max(1, st.n[g])).toFixed(1)}%)`);
    ctx.thresh_div.text = sc < 0 ? "<i>Colour by a score to see the threshold and the OoD images it lets through.</i>" :
      `<b>${esc(ctx.colour.value)}</b> threshold t = ${t.toFixed(4)}: ${(100 * ctx.recall.value).toFixed(0)}% of the ID images shown score ≥ t.` +
      `<br>OoD images let through (score ≥ t), outlined:<br>` + lines.join("<br>");
    Object.assign(report, {state: {model: ctx.model.value, view: ctx.views[v], alpha: ctx.alphas[a],
      colour: sc >= 0 ? ctx.score_keys[sc] : "group", recall: ctx.recall.value,
      threshold: Number.isFinite(t) ? t : null, passed: st.passed, ood_shown: st.n, selected, histogram: hist,
      pairs: n_pairs, paths: n_paths, search: query, matches: st.matches,
      hidden: ctx.names.filter((_, k) => !ctx.renderers[k].visible),
      update_ms: performance.now() - started}});
    writeReport();
  }

  function init(ctx) {
    // a click on a legend entry hides its swatch; the group's points follow
    ctx.swatches.forEach((sw, k) => sw.properties.visible.change.connect(() => {
      ctx.renderers[k].visible = sw.visible;
      update(ctx, null);
    }));
    report.groups = {};
    ctx.sources.forEach((s, k) => { report.groups[ctx.names[k]] = s.data.x.length; });
    Object.assign(report, {models: ctx.model.options.length, alphas: ctx.alphas.length, views: ctx.views,
      scores: ctx.score_keys, root_views: Bokeh.index ? Object.keys(Bokeh.index).length : 0});
    update(ctx, null);
    requestAnimationFrame(() => requestAnimationFrame(() => {
      report.first_render_ms = performance.now();
      writeReport();
      if (window.location.hash === "#selftest") { selftest(ctx); }
    }));
  }

  // Drive every control as a user would, one step at a time, recording what each changed.
  function selftest(ctx) {
    const steps = {}, id = ctx.kinds.indexOf("id"), ood = ctx.kinds.indexOf("ood");
    const clearSel = () => ctx.sources.forEach((s) => { s.selected.indices = []; });
    const snap = () => JSON.parse(JSON.stringify(report.state));
    const plan = [
      ["initial", () => {}],
      ["score", () => { ctx.colour.value = ctx.colour.options[1]; }],
      ["recall", () => { ctx.recall.value = 0.8; }],
      ["box", () => {  // what the box-select tool selects: the points inside a data rectangle
        const d = ctx.sources[id].data, xs = Array.from(d.x).sort((p, q) => p - q), ys = Array.from(d.y).sort((p, q) => p - q);
        const box = [xs[Math.floor(xs.length / 4)], xs[Math.floor(3 * xs.length / 4)], ys[Math.floor(ys.length / 4)], ys[Math.floor(3 * ys.length / 4)]];
        steps.box_rect = box;
        ctx.sources.forEach((s) => {
          s.selected.indices = s.data.x.map((x, i) => i).filter((i) => s.data.x[i] >= box[0] && s.data.x[i] <= box[1] && s.data.y[i] >= box[2] && s.data.y[i] <= box[3]);
        });
      }],
      ["lasso", () => {  // a triangle around the first OoD set's centre, as the lasso tool would
        const d = ctx.sources[ood].data;
        const cx = d.x.reduce((p, q) => p + q, 0) / d.x.length, cy = d.y.reduce((p, q) => p + q, 0) / d.y.length;
        const r = 3 * Math.max(...d.x.map((x) => Math.abs(x - cx)), ...d.y.map((y) => Math.abs(y - cy)));
        const poly = [[cx - r, cy - r], [cx + r, cy - r], [cx, cy + r]];
        const inside = (x, y) => {
          let c = false;
          for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
            const [xi, yi] = poly[i], [xj, yj] = poly[j];
            if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) { c = !c; }
          }
          return c;
        };
        clearSel();
        ctx.sources[ood].selected.indices = d.x.map((x, i) => i).filter((i) => inside(d.x[i], d.y[i]));
      }],
      ["pairs", () => { clearSel(); ctx.pairs.active = true; }],
      ["paths", () => { ctx.pairs.active = false; ctx.paths.active = ctx.n_models > 1; }],
      ["legend", () => { ctx.paths.active = false; ctx.swatches[ctx.swatches.length - 1].visible = false; }],
      ["search", () => { ctx.swatches[ctx.swatches.length - 1].visible = true; ctx.search.value = ctx.sources[id].data.label[0]; }],
      ["controls", () => {
        ctx.search.value = ""; ctx.search.value_input = "";
        steps.x_before = ctx.sources[id].data.x[0];
        ctx.model.value = ctx.model.options[ctx.model.options.length - 1];
        ctx.view.active = 1;
        ctx.slider.value = ctx.alphas[ctx.alphas.length - 1];
        ctx.sources[id].selected.indices = [0];
      }],
    ];
    let i = 0;
    const next = () => {
      if (i > 0) {
        steps[plan[i - 1][0]] = snap();
        if (plan[i - 1][0] === "box") { steps.panel_after_box = ctx.panel.text.replace(/<style>.*?<\/style>/g, "").slice(0, 2000); }
      }
      if (i === plan.length) {
        const d = ctx.sources[id].data, m = ctx.model.options.length - 1, a = ctx.alphas.length - 1;
        Object.assign(steps, {group: ctx.names[id], x_after: d.x[0], x_expected: d[`x_${m}_1_${a}`][0], details: ctx.details.text});
        report.selftest = steps;
        writeReport();
        return;
      }
      plan[i][1]();
      i += 1;
      setTimeout(next, 150);
    };
    next();
  }

  return {update, init, threshold};
})();
