"""The demo in a real browser: headless Chromium driven by Selenium.

Clicks through every tab as a visitor would and checks that what the page shows is the
library's answer (the `library` fixture: a Run and Searcher loaded apart from the demo):
the labels of a picked and of an uploaded image, in order; the ids found by words, by
similarity and by algebra; and that bad inputs show an error toast naming the problem.
Saves a screenshot of each tab under artifacts/screenshots/ (gitignored) to look at.

Needs Debian's `chromium` and `chromium-driver` (installed here when missing and run
as root, else skipped) and the `selenium` package (skipped without it).
"""

import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import PIL.Image
import pytest

webdriver = pytest.importorskip(
    'selenium.webdriver', reason='selenium is not installed (pip install selenium)')
from selenium.webdriver.chrome.service import Service  # pylint: disable=wrong-import-position
from selenium.webdriver.common.by import By  # pylint: disable=wrong-import-position
from selenium.common.exceptions import StaleElementReferenceException  # pylint: disable=wrong-import-position
from selenium.webdriver.common.keys import Keys  # pylint: disable=wrong-import-position
from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=wrong-import-position

# pylint: disable=wrong-import-position
from devise_jax import plots
from devise_jax.demo import images
from demo_support import library_labels
# pylint: enable=wrong-import-position

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
SCREENSHOTS = pathlib.Path(__file__).resolve().parent.parent / 'artifacts' / 'screenshots'
FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run',
         '--disable-dev-shm-usage', '--window-size=1280,1200')


def _install_chromium():
  if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
    return
  if os.geteuid() != 0:
    pytest.skip(f'{CHROMIUM} is missing and this is not root: apt-get install chromium '
                'chromium-driver to run the browser test')
  env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
  for command in (['apt-get', 'update', '-qq'],
                  ['apt-get', 'install', '-y', '-qq', 'chromium', 'chromium-driver']):
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900,
                          check=False)
    if proc.returncode:
      pytest.skip(f'{" ".join(command)} failed: {proc.stderr.strip()[-300:]}')


@pytest.fixture(scope='module')
def browser():
  _install_chromium()
  profile = tempfile.mkdtemp(prefix='chromium-profile-')
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in FLAGS + (f'--user-data-dir={profile}',):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  driver.set_page_load_timeout(60)
  yield driver
  driver.quit()
  shutil.rmtree(profile, ignore_errors=True)


def _screenshot(driver, name):
  """A full-page PNG of the current tab under artifacts/screenshots/."""
  SCREENSHOTS.mkdir(parents=True, exist_ok=True)
  height = driver.execute_script('return document.documentElement.scrollHeight')
  driver.set_window_size(1280, max(900, min(int(height) + 40, 4000)))
  path = SCREENSHOTS / f'{name}.png'
  driver.save_screenshot(str(path))
  driver.set_window_size(1280, 1200)
  assert path.stat().st_size > 10_000
  return path


def _text(driver, elem_id):
  return driver.find_element(By.ID, elem_id).text


def _table(driver, elem_id, headers):
  """The rows of a shown gr.Dataframe, as {header: cell text}."""
  lines = _text(driver, elem_id).splitlines()
  start = next(i for i in range(len(lines)) if lines[i:i + len(headers)] == headers)
  cells = lines[start + len(headers):]
  return [dict(zip(headers, cells[i:i + len(headers)]))
          for i in range(0, len(cells), len(headers))]


def _check_labels(driver, want):
  """The zero-shot table shows exactly the library's labels, in order, with scores."""
  shown = _table(driver, 'zs-table', ['rank', 'label', 'score', 'unseen'])
  assert [(r['rank'], r['label'], r['unseen']) for r in shown] == [
      (str(n), w['label'], str(w['unseen']).lower()) for n, w in enumerate(want, 1)]
  for row, w in zip(shown, want):
    assert float(row['score']) == pytest.approx(w['score'], abs=1.5e-4)


def _grid_ids(driver, elem_id):
  """The gallery ids of a results grid, from its captions ('#12 Shirt · 0.345')."""
  return [int(m) for m in re.findall(r'^#(\d+) ', _text(driver, elem_id), re.MULTILINE)]


def _toasts(driver):
  return [t.text for t in driver.find_elements(By.CSS_SELECTOR,
                                               '[data-testid="toast-text"]')]


def _expect_error(driver, wait, message):
  """An error toast appears whose text is exactly `message`; then it is closed."""
  wait.until(lambda d: message in _toasts(d))
  for close in driver.find_elements(By.CSS_SELECTOR, '.toast-close'):
    try:
      close.click()
    except StaleElementReferenceException:  # the toast timed out and left by itself
      pass
  wait.until(lambda d: not _toasts(d))


def _type(driver, selector, text):
  box = driver.find_element(By.CSS_SELECTOR, selector)
  box.send_keys(Keys.CONTROL, 'a')
  box.send_keys(text)


def _pick(driver, picker_id, index):
  thumbs = driver.find_elements(By.CSS_SELECTOR, f'#{picker_id} button.thumbnail-item')
  thumbs[index].click()
  return int(thumbs[index].text.split()[0].lstrip('#'))


def _wait_for_id(driver, wait, elem_id, value):
  wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'#{elem_id} input').get_property(
      'value') == str(value))


def _tab(driver, wait, name, button_id):
  driver.find_element(By.XPATH, f"//button[@role='tab'][.='{name}']").click()
  wait.until(lambda d: d.find_element(By.ID, button_id).is_displayed())


def _zero_shot(browser, wait, server, library, tmp_path):
  searcher = library.searcher
  # No image: an error toast that says so.
  browser.find_element(By.ID, 'zs-predict').click()
  _expect_error(browser, wait, 'no image: upload an image or pick one from the gallery')
  _screenshot(browser, 'zero_shot_error')

  # Pick a gallery image, predict: the library's top 5 for its stored vector, in order.
  gallery_id = _pick(browser, 'zs-picker', 1)
  _wait_for_id(browser, wait, 'zs-gid', gallery_id)
  browser.find_element(By.ID, 'zs-predict').click()
  wait.until(lambda d: f'gallery image #{gallery_id}' in _text(d, 'zs-status'))
  _check_labels(browser, searcher.labels(searcher.gallery['devise'][gallery_id],
                                         'classes', 5))
  _screenshot(browser, 'zero_shot_gallery')

  # Upload a file: the id goes back to -1 and the library's labels of the upload show.
  upload = tmp_path / 'upload.png'
  PIL.Image.fromarray(server.backend.images.get(7)[..., 0], 'L').save(upload)
  browser.find_element(By.CSS_SELECTOR, '#zs-image input[type=file]').send_keys(str(upload))
  _wait_for_id(browser, wait, 'zs-gid', -1)
  browser.find_element(By.ID, 'zs-predict').click()
  wait.until(lambda d: 'the uploaded image' in _text(d, 'zs-status'))
  _check_labels(browser, library_labels(library, images.decode(str(upload))))
  _screenshot(browser, 'zero_shot')

  # Typing labels selects 'my list'; a list of nothing is an error that says so.
  _type(browser, '#zs-labels textarea', ' , ,')
  browser.find_element(By.ID, 'zs-predict').click()
  _expect_error(browser, wait, 'the label list is empty: type labels separated by commas')


def _search_words(browser, wait, library):
  _tab(browser, wait, 'Search by words', 'sw-search')
  browser.find_element(By.ID, 'sw-search').click()  # The default query: 'boot'.
  wait.until(lambda d: '+1 × boot' in _text(d, 'sw-status'))
  wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#sw-grid img')) >= 8)
  want = [r['id'] for r in library.searcher.words_to_images(['boot'], [1.0], 8)]
  assert _grid_ids(browser, 'sw-grid') == want
  shown = _table(browser, 'sw-table', ['rank', 'id', 'label', 'score'])
  assert [int(r['id']) for r in shown] == want
  _screenshot(browser, 'search_words')
  _type(browser, '#sw-word-1 textarea', 'qwxzzy')
  browser.find_element(By.ID, 'sw-search').click()
  _expect_error(browser, wait, "no word vector for 'qwxzzy': try another word")


def _similar(browser, wait, library):
  searcher = library.searcher
  _tab(browser, wait, 'Similar images', 'si-find')
  gallery_id = _pick(browser, 'si-picker', 4)
  _wait_for_id(browser, wait, 'si-gid', gallery_id)
  browser.find_element(By.ID, 'si-find').click()
  label = searcher.meta['label_names'][gallery_id]
  wait.until(lambda d: f'gallery image #{gallery_id} ({label}) in siamese space'
             in _text(d, 'si-status'))
  want = searcher.similar(searcher.gallery['siamese'][gallery_id], 'siamese', 8,
                          exclude_ids=[gallery_id])
  assert _grid_ids(browser, 'si-grid') == [r['id'] for r in want]
  _screenshot(browser, 'similar')


def _algebra(browser, wait, library):
  searcher = library.searcher
  _tab(browser, wait, 'Puppy algebra', 'al-compute')
  first = _pick(browser, 'al-picker', 0)
  _wait_for_id(browser, wait, 'al-gid-1', first)
  second = _pick(browser, 'al-picker', 8)  # Goes into slot 2 (sign '-').
  _wait_for_id(browser, wait, 'al-gid-2', second)
  browser.find_element(By.ID, 'al-compute').click()
  wait.until(lambda d: 'nearest' in _text(d, 'al-status'))
  wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#al-inputs img')) == 2)
  names = searcher.meta['label_names']
  assert (f'+1 × #{first} {names[first]} -1 × #{second} {names[second]} in siamese '
          'space') in _text(browser, 'al-status')
  siamese = searcher.gallery['siamese']
  want = searcher.algebra([siamese[first], siamese[second]], [1.0, -1.0],
                          space='siamese', k=8, exclude_ids=[first, second])
  assert _grid_ids(browser, 'al-grid') == [r['id'] for r in want]
  _screenshot(browser, 'algebra')


def _results(browser, wait, server):
  """Every plot of the workdir is shown, each picture loaded (and not blank)."""
  names = [os.path.splitext(os.path.basename(p))[0]
           for p, _ in plots.existing(server.backend.workdir)]
  assert set(plots.EVAL_PLOTS) <= {f'{n}.png' for n in names}
  _tab(browser, wait, 'Results', f'plot-{names[0]}')
  loaded = lambda d, n: d.execute_script(
      "const i = document.querySelector(`#plot-${arguments[0]} img`);"
      "return i && i.complete ? i.naturalWidth : 0;", n)
  for name in names:
    browser.execute_script('document.getElementById(arguments[0]).scrollIntoView()',
                           f'plot-{name}')
    wait.until(lambda d, n=name: loaded(d, n) > 100)
  _screenshot(browser, 'results')


def _api_docs(browser, wait, server):
  """The REST API's Swagger UI renders its five routes (from local files)."""
  browser.get(server.url + 'docs')
  wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '.opblock')) == 5)
  _screenshot(browser, 'api_docs')


def test_every_tab_shows_the_library_answers(browser, server, library, tmp_path):
  # Gradio re-renders toasts and results while we read them: an element found a moment
  # ago may be gone, so a wait retries on stale elements instead of failing.
  wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
  browser.get(server.url)
  wait.until(lambda d: d.find_elements(By.ID, 'zs-predict'))
  tabs = [t.text for t in browser.find_elements(By.CSS_SELECTOR, 'button[role="tab"]')]
  assert tabs == ['Zero-shot prediction', 'Search by words', 'Similar images',
                  'Puppy algebra', 'Results', 'About']
  _zero_shot(browser, wait, server, library, tmp_path)
  _search_words(browser, wait, library)
  _similar(browser, wait, library)
  _algebra(browser, wait, library)
  _results(browser, wait, server)
  _api_docs(browser, wait, server)
  browser.get(server.url)
  wait.until(lambda d: d.find_elements(By.ID, 'zs-predict'))
  _tab(browser, wait, 'About', 'about-text')
  about = _text(browser, 'about-text')
  for stage, step in library.run.steps.items():
    assert f'{stage} ' in about and library.run.fingerprint(stage) in about
  assert 'matches' in about and 'not loaded' not in about
  _screenshot(browser, 'about')
