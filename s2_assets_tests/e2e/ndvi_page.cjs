// Opens the asset page of `ndvi` in a real Chromium (Playwright, Debian's /usr/bin/chromium),
// reads what a user sees on its Partitions tab, opens one partition's quicklook and saves
// two screenshots. Prints one JSON object; test_services.py asserts on it.
//
//   node ndvi_page.cjs <base url> <first day> <last day> <day|tile to open> <screenshot dir>
//
// Needs NODE_PATH to hold playwright-core (npm install playwright-core; no browser download)
// and S2_E2E_CHROMIUM (default /usr/bin/chromium).
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const [base, firstDay, lastDay, openKey, shotDir] = process.argv.slice(2);
const [openDay, openTile] = openKey.split('|');
const TIMEOUT_MS = 30000;

// The partition columns are virtualised lists: one row per key, the key in a title attribute
// and a status dot whose background names the status colour.
async function column(page, index) {
  const rows = page.locator('[class*="VirtualizedTable_inner"]').nth(index).locator('[class*="VirtualizedTable_row"]');
  return rows.evaluateAll((elements) => elements.map((row) => ({
    key: row.querySelector('[title]').getAttribute('title'),
    dots: Array.from(row.querySelectorAll('div[style*="border-radius: 100%"]')).map((dot) => dot.style.background),
  })));
}

async function count(page, label) {
  const text = await page.getByText(new RegExp(`^${label} \\(\\d+\\)$`)).first().innerText();
  return Number(text.match(/\((\d+)\)/)[1]);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.S2_E2E_CHROMIUM || '/usr/bin/chromium',
    // Root in a container has no user namespace for Chromium's sandbox.
    args: ['--no-sandbox'],
  });
  const result = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1250 } });
    page.setDefaultTimeout(TIMEOUT_MS);
    const range = encodeURIComponent(`[${firstDay}...${lastDay}]`);
    // A fresh instance greets the first visitor with a newsletter dialog, whenever its query
    // returns: skip it whenever it shows up in the way.
    const skip = page.getByRole('button', { name: 'Skip' });
    await page.addLocatorHandler(skip, async () => { await skip.click(); });
    await page.goto(`${base}/assets/ndvi?view=partitions&date_range=${range}`, { waitUntil: 'networkidle' });
    await page.getByText(/^Materialized \(\d+\)$/).first().waitFor();
    for (const label of ['Failed', 'Materialized', 'Materializing', 'Missing']) {
      result[label.toLowerCase()] = await count(page, label);
    }
    // As a user would: hide the missing partitions, leaving the materialized ones.
    await page.getByText(/^Missing \(\d+\)$/).first().click();
    await page.getByText(`${result.materialized} Partitions Selected`).waitFor();
    result.days = await column(page, 0);
    result.tiles_by_day = {};
    for (const day of result.days) {
      await page.locator(`[class*="VirtualizedTable_inner"] [title="${day.key}"]`).first().click();
      await page.waitForURL(new RegExp(`partition=${day.key}`));
      await page.waitForLoadState('networkidle');
      result.tiles_by_day[day.key] = await column(page, 1);
    }
    await page.locator(`[class*="VirtualizedTable_inner"] [title="${openDay}"]`).first().click();
    await page.locator(`[class*="VirtualizedTable_inner"] [title="${openTile}"]`).first().click();
    await page.waitForURL(new RegExp(`partition=${encodeURIComponent(openKey)}`));
    await page.getByText(openKey, { exact: true }).first().waitFor();
    await page.getByText('[Show Markdown]').first().waitFor();
    const body = await page.innerText('body');
    // The detail pane: the key, its status badge, latest run, metadata.
    result.open_partition_text = body.slice(body.lastIndexOf(openKey), body.lastIndexOf(openKey) + 300);
    await page.screenshot({ path: path.join(shotDir, 'ndvi-partitions.png') });
    await page.locator('tr', { hasText: 'quicklook' }).getByText('[Show Markdown]').click();
    const image = page.getByRole('dialog').locator('img');
    await image.waitFor();
    await page.waitForFunction((img) => img.complete, await image.elementHandle());
    result.quicklook = await image.evaluate((img) => ({
      src_prefix: img.src.slice(0, 22),
      width: img.naturalWidth,
      height: img.naturalHeight,
      shown_width: img.getBoundingClientRect().width,
    }));
    await page.getByRole('dialog').screenshot({ path: path.join(shotDir, 'ndvi-quicklook.png') });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result));
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
