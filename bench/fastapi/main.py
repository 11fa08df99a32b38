"""FastAPI's security tutorial ("OAuth2 with Password (and hashing), Bearer
with JWT tokens"), made runnable as a benchmark reference.

Kept as the tutorial writes it: PyJWT, OAuth2PasswordBearer,
OAuth2PasswordRequestForm, async handlers that verify passwords inline, and
an in-memory ``fake_users_db``. The changes, for a like-for-like comparison
with warden:

- argon2id through argon2-cffi with warden's parameters (m=19456 KiB, t=2,
  p=1) instead of the tutorial's default hasher;
- ``fake_users_db`` holds ``BENCH_USERS`` users ``user{i}`` (default 10000)
  sharing one hash of ``BENCH_PASSWORD``, computed once at start-up;
- the user model has warden's JSON shape (id, username, email, full_name,
  roles, disabled, created_at, updated_at), served at ``/users/me``.

Run:  uvicorn main:app --workers 1 --no-access-log
"""

import os
from datetime import datetime, timedelta, timezone
from typing import Annotated

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from jwt.exceptions import InvalidTokenError
from pydantic import BaseModel

SECRET_KEY = os.environ.get(
    "BENCH_SECRET", "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7"
)
ALGORITHM = "HS256"
ACCESS_TOKEN_EXPIRE_MINUTES = 30

password_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)

_hash = password_hasher.hash(os.environ.get("BENCH_PASSWORD", "correct horse battery staple"))
fake_users_db = {
    f"user{i}": {
        "id": f"0193a0c4-5b8e-7c3a-9f1e-{i:012x}",
        "username": f"user{i}",
        "email": f"user{i}@example.com",
        "full_name": None,
        "roles": ["user"],
        "disabled": False,
        "created_at": "2026-11-28T16:00:00Z",
        "updated_at": "2026-11-28T16:00:00Z",
        "hashed_password": _hash,
    }
    for i in range(int(os.environ.get("BENCH_USERS", "10000")))
}


class Token(BaseModel):
    access_token: str
    token_type: str


class TokenData(BaseModel):
    username: str | None = None


class User(BaseModel):
    id: str
    username: str
    email: str | None = None
    full_name: str | None = None
    roles: list[str]
    disabled: bool | None = None
    created_at: str
    updated_at: str


class UserInDB(User):
    hashed_password: str


DUMMY_HASH = password_hasher.hash("dummypassword")

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")

app = FastAPI()


def verify_password(plain_password, hashed_password):
    try:
        return password_hasher.verify(hashed_password, plain_password)
    except VerificationError:
        return False


def get_password_hash(password):
    return password_hasher.hash(password)


def get_user(db, username: str):
    if username in db:
        user_dict = db[username]
        return UserInDB(**user_dict)


def authenticate_user(fake_db, username: str, password: str):
    user = get_user(fake_db, username)
    if not user:
        verify_password(password, DUMMY_HASH)
        return False
    if not verify_password(password, user.hashed_password):
        return False
    return user


def create_access_token(data: dict, expires_delta: timedelta | None = None):
    to_encode = data.copy()
    if expires_delta:
        expire = datetime.now(timezone.utc) + expires_delta
    else:
        expire = datetime.now(timezone.utc) + timedelta(minutes=15)
    to_encode.update({"exp": expire})
    encoded_jwt = jwt.encode(to_encode, SECRET_KEY, algorithm=ALGORITHM)
    return encoded_jwt


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)]):
    credentials_exception = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        payload = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
        username = payload.get("sub")
        if username is None:
            raise credentials_exception
        token_data = TokenData(username=username)
    except InvalidTokenError:
        raise credentials_exception
    user = get_user(fake_users_db, username=token_data.username)
    if user is None:
        raise credentials_exception
    return user


async def get_current_active_user(
    current_user: Annotated[User, Depends(get_current_user)],
):
    if current_user.disabled:
        raise HTTPException(status_code=400, detail="Inactive user")
    return current_user


@app.post("/token")
async def login_for_access_token(
    form_data: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> Token:
    user = authenticate_user(fake_users_db, form_data.username, form_data.password)
    if not user:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    access_token_expires = timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    access_token = create_access_token(
        data={"sub": user.username}, expires_delta=access_token_expires
    )
    return Token(access_token=access_token, token_type="bearer")


@app.get("/users/me", response_model=User)
async def read_users_me(
    current_user: Annotated[User, Depends(get_current_active_user)],
):
    return current_user
