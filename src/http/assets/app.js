// The vistyle web page: pick a style, add pictures, ask, watch the answer stream, ask a follow-up.
// It talks only to the OpenAI-compatible API of the server that serves it (/v1/models,
// /v1/chat/completions with stream: true); no build step, no external resources.

const KEY_STORAGE = 'vistyle.apiKey';
/** Pictures larger than this are scaled down before upload (the model looks at 384 px anyway). */
const RESIZE_ABOVE_BYTES = 2 * 1024 * 1024;
const RESIZE_MAX_SIDE = 1536;

const TEXT = {
  en: {
    tagline: 'Ask about a picture, answered in the voice you pick.',
    styleLegend: 'Style',
    stylesLoading: 'Loading styles…',
    stylesFailed: 'Could not load the styles.',
    sample: 'Sample',
    conversationLabel: 'Conversation',
    addPictures: 'Add pictures',
    dropHint: 'or drop / paste them here',
    thumbsLabel: 'Pictures for this question',
    removePicture: 'Remove picture {n}',
    questionLabel: 'Your question',
    questionPlaceholder: 'What is in this picture?',
    ask: 'Ask',
    cancel: 'Cancel',
    newConversation: 'New conversation',
    you: 'You',
    waiting: 'Sending…',
    queued: 'In the queue: number {n}.',
    thinking: 'Answering…',
    done: 'Done.',
    cancelled: 'Cancelled.',
    needSomething: 'Add a picture or type a question first.',
    notAPicture: '{name} is not a picture (JPEG, PNG, WebP or GIF).',
    keyTitle: 'API key needed',
    keyExplain: 'This server needs an API key. Ask its operator for one.',
    keyLabel: 'API key',
    keySave: 'Use this key',
    keyCancel: 'Cancel',
    keyWrong: 'That key was not accepted.',
    network: 'Could not reach the server.',
    'error.rate_limit_exceeded': 'You are asking a bit fast — please wait {seconds}s and try again.',
    'error.queue_full': 'The server is very busy. Please try again in a few minutes.',
    'error.too_many_images': 'Too many pictures. Send fewer, or start a new conversation.',
    'error.image_too_large': 'That picture is too large.',
    'error.invalid_image': 'That picture could not be read.',
    'error.question_empty': 'Please type a question.',
    'error.context_length_exceeded': 'The conversation is too long. Start a new one.',
    'error.shutting_down': 'The server is restarting. Please try again in a minute.',
    'error.model_loading': 'The model is still loading. Please try again shortly.',
  },
  zh: {
    tagline: '就图片提问，用你选的风格回答。',
    styleLegend: '风格',
    stylesLoading: '正在加载风格…',
    stylesFailed: '无法加载风格列表。',
    sample: '示例',
    conversationLabel: '对话',
    addPictures: '添加图片',
    dropHint: '或拖放 / 粘贴到这里',
    thumbsLabel: '本次提问的图片',
    removePicture: '移除第 {n} 张图片',
    questionLabel: '你的问题',
    questionPlaceholder: '图片里有什么？',
    ask: '提问',
    cancel: '取消',
    newConversation: '新对话',
    you: '你',
    waiting: '发送中…',
    queued: '排队中：你排在第 {n} 位。',
    thinking: '回答中…',
    done: '完成。',
    cancelled: '已取消。',
    needSomething: '请先添加图片或输入问题。',
    notAPicture: '{name} 不是图片（JPEG、PNG、WebP 或 GIF）。',
    keyTitle: '需要 API 密钥',
    keyExplain: '此服务器需要 API 密钥，请向管理员索取。',
    keyLabel: 'API 密钥',
    keySave: '使用此密钥',
    keyCancel: '取消',
    keyWrong: '密钥无效。',
    network: '无法连接服务器。',
    'error.rate_limit_exceeded': '你问得有点快了，请等 {seconds} 秒再试。',
    'error.queue_full': '服务器太忙了，请过几分钟再试。',
    'error.too_many_images': '图片太多了，请少发几张，或开始新对话。',
    'error.image_too_large': '图片太大了。',
    'error.invalid_image': '无法读取这张图片。',
    'error.question_empty': '请输入问题。',
    'error.context_length_exceeded': '对话太长了，请开始新对话。',
    'error.shutting_down': '服务器正在重启，请过一分钟再试。',
    'error.model_loading': '模型还在加载，请稍后再试。',
  },
};

/** zh or en: the first of the browser's languages that is one of them. */
const lang = (() => {
  for (const code of navigator.languages?.length ? navigator.languages : [navigator.language || 'en']) {
    if (/^(zh|yue)\b/i.test(code)) return 'zh';
    if (/^en\b/i.test(code)) return 'en';
  }
  return 'en';
})();

function t(key, params = {}) {
  const text = TEXT[lang][key] ?? TEXT.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

const $ = (selector) => document.querySelector(selector);
const els = {
  styles: $('#styles'),
  stylesNote: $('#styles-note'),
  conversation: $('#conversation'),
  form: $('#ask-form'),
  drop: $('#drop'),
  fileInput: $('#file-input'),
  thumbs: $('#thumbs'),
  question: $('#question'),
  ask: $('#ask'),
  cancel: $('#cancel'),
  reset: $('#reset'),
  status: $('#status'),
  keyDialog: $('#key-dialog'),
  keyForm: $('#key-form'),
  keyInput: $('#key-input'),
};

const state = {
  /** OpenAI messages of the conversation so far. */
  messages: [],
  /** Pictures for the next question: { dataUrl, name } */
  pending: [],
  controller: null,
  key: localStorage.getItem(KEY_STORAGE) || '',
};

// ------------------------------------------------------------------ text of the page

function localizePage() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
}

function setStatus(text, kind = 'info') {
  els.status.textContent = text;
  els.status.classList.toggle('error', kind === 'error');
}

// ------------------------------------------------------------------ API

function authHeaders() {
  return state.key ? { authorization: `Bearer ${state.key}` } : {};
}

/** Asks for a key; resolves true when one was entered. */
function askForKey(wrong) {
  return new Promise((resolve) => {
    els.keyInput.value = '';
    const explain = els.keyDialog.querySelector('p');
    explain.textContent = wrong ? t('keyWrong') : t('keyExplain');
    els.keyDialog.addEventListener(
      'close',
      () => {
        const value = els.keyInput.value.trim();
        if (els.keyDialog.returnValue === 'save' && value) {
          state.key = value;
          localStorage.setItem(KEY_STORAGE, value);
          resolve(true);
        } else {
          resolve(false);
        }
      },
      { once: true },
    );
    els.keyDialog.showModal();
    els.keyInput.focus();
  });
}

/** fetch() that asks for a key on 401 and tries again. */
async function apiFetch(path, init = {}) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, { ...init, headers: { ...(init.headers || {}), ...authHeaders() } });
    if (response.status !== 401 || attempt >= 3) return response;
    const entered = await askForKey(Boolean(state.key));
    if (!entered) return response;
  }
}

async function errorText(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    return `HTTP ${response.status}`;
  }
  return describeError(body?.error, response.headers.get('retry-after'));
}

function describeError(error, retryAfter) {
  const code = error?.code;
  if (code && TEXT[lang][`error.${code}`]) return t(`error.${code}`, { seconds: retryAfter || '60' });
  return error?.message || 'Error';
}

// ------------------------------------------------------------------ styles

let selectedModel = 'vistyle/plain';

async function loadStyles() {
  let response;
  try {
    response = await apiFetch('v1/models');
  } catch {
    els.stylesNote.textContent = t('stylesFailed');
    return;
  }
  if (!response.ok) {
    els.stylesNote.textContent = `${t('stylesFailed')} ${await errorText(response)}`;
    return;
  }
  const { data } = await response.json();
  const models = data.filter((model) => model.id !== 'vistyle');
  const list = document.createElement('div');
  list.className = 'style-list';
  models.forEach((model, index) => {
    const label = document.createElement('label');
    label.className = 'style-option';
    const input = document.createElement('input');
    input.type = 'radio';
    input.name = 'style';
    input.value = model.style;
    input.dataset.model = model.id;
    if (index === 0) {
      input.checked = true;
      selectedModel = model.id;
    }
    input.addEventListener('change', () => {
      if (input.checked) selectedModel = model.id;
    });
    const name = document.createElement('span');
    name.className = 'style-name';
    name.textContent = model.names?.[lang] || model.name || model.id;
    const description = document.createElement('span');
    description.className = 'style-description';
    description.textContent = model.description?.[lang] || '';
    const sample = document.createElement('span');
    sample.className = 'style-sample';
    sample.textContent = model.sample_answer?.[lang] ? `${t('sample')}: ${model.sample_answer[lang]}` : '';
    label.append(input, name, description, sample);
    list.append(label);
  });
  els.stylesNote.remove();
  els.styles.append(list);
}

// ------------------------------------------------------------------ pictures

const PICTURE_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif'];

function readAsDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** Big photos are scaled down in the browser: less to upload, the same to the model. */
async function shrink(file) {
  if (file.size <= RESIZE_ABOVE_BYTES || file.type === 'image/gif') return readAsDataUrl(file);
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, RESIZE_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement('canvas');
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL('image/jpeg', 0.9);
  } catch {
    return readAsDataUrl(file);
  }
}

async function addFiles(files) {
  for (const file of files) {
    if (!PICTURE_TYPES.includes(file.type)) {
      setStatus(t('notAPicture', { name: file.name || 'file' }), 'error');
      continue;
    }
    state.pending.push({ dataUrl: await shrink(file), name: file.name || 'picture' });
  }
  renderThumbs();
}

function renderThumbs() {
  els.thumbs.replaceChildren(
    ...state.pending.map((picture, index) => {
      const item = document.createElement('li');
      const img = document.createElement('img');
      img.src = picture.dataUrl;
      img.alt = picture.name;
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.textContent = '×';
      remove.setAttribute('aria-label', t('removePicture', { n: index + 1 }));
      remove.addEventListener('click', () => {
        state.pending.splice(index, 1);
        renderThumbs();
        els.fileInput.focus();
      });
      item.append(img, remove);
      return item;
    }),
  );
}

els.fileInput.addEventListener('change', async () => {
  await addFiles([...els.fileInput.files]);
  els.fileInput.value = '';
});
for (const type of ['dragenter', 'dragover']) {
  els.drop.addEventListener(type, (event) => {
    event.preventDefault();
    els.drop.dataset.state = 'over';
  });
}
for (const type of ['dragleave', 'drop']) els.drop.addEventListener(type, () => (els.drop.dataset.state = 'idle'));
els.drop.addEventListener('drop', (event) => {
  event.preventDefault();
  addFiles([...(event.dataTransfer?.files || [])]);
});
document.addEventListener('paste', (event) => {
  const files = [...(event.clipboardData?.files || [])].filter((file) => PICTURE_TYPES.includes(file.type));
  if (files.length > 0) {
    event.preventDefault();
    addFiles(files);
  }
});

// ------------------------------------------------------------------ conversation

function addTurn(role, text, pictures = []) {
  const turn = document.createElement('article');
  turn.className = `turn ${role}`;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role === 'user' ? t('you') : selectedModel;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  turn.append(who);
  for (const picture of pictures) {
    const img = document.createElement('img');
    img.src = picture.dataUrl;
    img.alt = picture.name;
    turn.append(img);
  }
  turn.append(body);
  els.conversation.append(turn);
  turn.scrollIntoView({ block: 'end', behavior: 'smooth' });
  return { turn, body };
}

function setBusy(busy) {
  els.ask.disabled = busy;
  els.cancel.hidden = !busy;
  els.reset.disabled = busy;
  if (busy) els.cancel.focus();
}

async function ask() {
  const question = els.question.value.trim();
  const pictures = state.pending;
  if (!question && pictures.length === 0) {
    setStatus(t('needSomething'), 'error');
    return;
  }
  const content = [
    ...(question ? [{ type: 'text', text: question }] : []),
    ...pictures.map((picture) => ({ type: 'image_url', image_url: { url: picture.dataUrl } })),
  ];
  const message = { role: 'user', content };
  addTurn('user', question, pictures);
  const answer = addTurn('assistant', '');
  answer.turn.setAttribute('aria-busy', 'true');
  state.pending = [];
  renderThumbs();
  els.question.value = '';

  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  setStatus(t('waiting'));
  let text = '';
  let ok = false;
  try {
    const response = await apiFetch('v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: selectedModel, stream: true, messages: [...state.messages, message] }),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    const position = Number(response.headers.get('x-vistyle-queue-position'));
    setStatus(position > 0 ? t('queued', { n: position }) : t('thinking'));
    for await (const event of readEvents(response.body)) {
      if (event.comment) {
        const match = /^queue position (\d+)/.exec(event.comment);
        if (match) setStatus(t('queued', { n: match[1] }));
        continue;
      }
      if (event.data === '[DONE]') break;
      const chunk = JSON.parse(event.data);
      if (chunk.error) throw new Error(describeError(chunk.error));
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        if (!text) setStatus(t('thinking'));
        text += delta;
        answer.body.textContent = text;
      }
    }
    ok = true;
    setStatus(t('done'));
  } catch (error) {
    if (controller.signal.aborted) {
      setStatus(t('cancelled'));
    } else {
      setStatus(error instanceof TypeError ? t('network') : error.message, 'error');
    }
    answer.turn.classList.add('failed');
    if (!text) answer.body.textContent = els.status.textContent;
  } finally {
    answer.turn.removeAttribute('aria-busy');
    state.controller = null;
    setBusy(false);
    els.question.focus();
  }
  // Only answered turns become the conversation the next question continues.
  if (ok) state.messages.push(message, { role: 'assistant', content: text });
  else if (pictures.length > 0) {
    state.pending = pictures;
    renderThumbs();
  }
}

/** Server-sent events from a response body: { data } or { comment }. */
async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) yield { comment: line.slice(1).trim() };
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) yield { data: data.join('\n') };
    }
  }
}

els.form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!state.controller) ask();
});
els.question.addEventListener('keydown', (event) => {
  // Enter asks, Shift+Enter is a new line; never while an input method is composing (zh).
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    els.form.requestSubmit();
  }
});
els.cancel.addEventListener('click', () => state.controller?.abort());
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && state.controller && !els.keyDialog.open) state.controller.abort();
});
els.reset.addEventListener('click', () => {
  state.messages = [];
  state.pending = [];
  renderThumbs();
  els.conversation.replaceChildren();
  setStatus('');
  els.question.focus();
});

localizePage();
loadStyles();
