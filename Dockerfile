FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps . && useradd --system gongkai && mkdir -p /data && chown gongkai /data
USER gongkai
ENV GONGKAI_DATA_DIR=/data
EXPOSE 8000
CMD ["gongkai", "serve", "--host", "0.0.0.0", "--port", "8000"]
