/* Virtualised rows for long lists (a 2,000-task run view, the comms log): only the rows in view,
   plus a margin, exist in the DOM. Rows have one fixed height (CSS), so the window is computed from
   the scroll position the scroll and resize listeners cached, never by measuring the DOM: a render
   writes and never reads layout. Rows are reused and updated in place: a row whose item is the same
   object as last time is skipped, and setText/setData change a node only when its value changed.
   A log that follows its end scrolls from its end (CSS flex-direction: column-reverse, scrollTop <= 0):
   new rows at the end keep it there with no write to scrollTop. Writing scrollTop forces a layout of
   the page at once; once per frame, it was the page's largest cost under a 2,000-task job. (The scroll
   listener reads scrollTop at no cost: nothing changes the DOM between frames.) */
"use strict";

const MARGIN_ROWS = 3;

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setData(node, key, value) {
  if (node.dataset[key] !== value) node.dataset[key] = value;
}

function setTitle(node, text) {
  if (node.title !== text) node.title = text;
}

class VirtualRows {
  /* scroller: the element that scrolls; holder: where rows go (a tbody, or the one child of a log);
     make(): a new empty row; fill(row, item): show item in row; spacer(): an empty filler element;
     stick: a log, its scroller laid out column-reverse: follow the end while the user is at the end. */
  constructor({ scroller, holder, rowH, make, fill, spacer, stick }) {
    Object.assign(this, { scroller, holder, rowH, make, fill, stick: !!stick });
    this.top = spacer();
    this.bottom = spacer();
    this.top.className = this.bottom.className = "vspacer";
    holder.replaceChildren(this.top, this.bottom);
    this.rows = [];
    this.first = 0;  // the index rows[0] shows
    this.count = 0;
    this.shown = 0;  // the count of the last render
    this.itemAt = () => null;
    this.offset = 0;  // scrollTop: from the start; for a log, how far from its end (>= 0)
    this.height = 0;
    this.atEnd = true;
    this.onchange = null;  // called when scrolling or resizing needs a render
    scroller.addEventListener("scroll", () => {
      this.offset = this.stick ? -scroller.scrollTop : scroller.scrollTop;
      this.atEnd = this.stick && this.offset < this.rowH * 1.5;
      if (this.onchange) this.onchange();
    }, { passive: true });
    new ResizeObserver((entries) => {
      this.height = entries[entries.length - 1].contentRect.height;
      if (this.onchange) this.onchange();
    }).observe(scroller);
  }

  /* The scroller's height, once the ResizeObserver said; until then a guess of 20 rows. */
  viewH() { return this.height || this.rowH * 20; }

  /* Back to the start (a run view) or, for a log, to its end. */
  reset() {
    this.offset = 0;
    this.atEnd = this.stick;
    this.scroller.scrollTop = 0;
  }

  set(count, itemAt) {
    this.count = count;
    this.itemAt = itemAt;
  }

  /* The first and last index in the DOM (with count items: by default, those of the last set()). */
  window(count = this.count) {
    const top = this.stick ? Math.max(0, count * this.rowH - this.viewH() - (this.atEnd ? 0 : this.offset))
      : this.offset;
    const first = Math.max(0, Math.floor(top / this.rowH) - MARGIN_ROWS);
    const last = Math.min(count, Math.ceil((top + this.viewH()) / this.rowH) + MARGIN_ROWS);
    return [first, Math.max(first, last)];
  }

  render() {
    if (this.stick && !this.atEnd && this.count > this.shown) {
      // The user reads further up: keep the rows they read in place as the log grows below them.
      this.offset += (this.count - this.shown) * this.rowH;
      this.scroller.scrollTop = -this.offset;
    }
    this.shown = this.count;
    const [first, last] = this.window();
    const n = last - first;
    // A window that moved by a few rows (a log growing at its end) moves those rows across instead
    // of rewriting every row: the others keep showing the same items, and fill() changes nothing.
    const shift = first - this.first;
    if (shift > 0 && shift < this.rows.length) {
      for (let i = 0; i < shift; i++) { const r = this.rows.shift(); this.holder.insertBefore(r, this.bottom); this.rows.push(r); }
    } else if (shift < 0 && -shift < this.rows.length) {
      for (let i = 0; i < -shift; i++) { const r = this.rows.pop(); this.holder.insertBefore(r, this.top.nextSibling); this.rows.unshift(r); }
    }
    this.first = first;
    while (this.rows.length < n) {
      const row = this.make();
      this.holder.insertBefore(row, this.bottom);
      this.rows.push(row);
    }
    while (this.rows.length > n) this.rows.pop().remove();
    // A row still showing the same item (records are replaced, never changed in place) is not
    // touched: a render reads and writes the DOM only for the rows whose item changed.
    for (let i = 0; i < n; i++) {
      const row = this.rows[i], item = this.itemAt(first + i);
      if (row.item_ !== item) { row.item_ = item; this.fill(row, item); }
    }
    const topH = first * this.rowH + "px", bottomH = (this.count - last) * this.rowH + "px";
    if (this.top.style.height !== topH) this.top.style.height = topH;
    if (this.bottom.style.height !== bottomH) this.bottom.style.height = bottomH;
  }
}
